import type { FastifyReply, FastifyRequest } from 'fastify';
import { DAY_MS } from '../core/clock.ts';

/** Marks a browser that signed in to an account before (modules/identity/throttles.ts, deviceToken). */
export const DEVICE_COOKIE = 'paddock_device';
const DEVICE_COOKIE_PATH = '/v1/auth/login';
const DEVICE_COOKIE_MAX_AGE_SEC = (180 * DAY_MS) / 1000;

/** Sent only to the login route, which is the only reader; not readable by script. */
export function setDeviceCookie(reply: FastifyReply, token: string, options: { secure: boolean }): void {
  reply.setCookie(DEVICE_COOKIE, token, {
    path: DEVICE_COOKIE_PATH,
    httpOnly: true,
    sameSite: 'strict',
    secure: options.secure,
    maxAge: DEVICE_COOKIE_MAX_AGE_SEC,
  });
}

export function deviceCookieOf(request: FastifyRequest): string | null {
  const value = request.cookies?.[DEVICE_COOKIE];
  return typeof value === 'string' && value !== '' ? value : null;
}
