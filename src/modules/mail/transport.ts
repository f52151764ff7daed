import net from 'node:net';
import nodemailer from 'nodemailer';
import type { OutboundGuard } from '../../core/outbound-guard.ts';

/** One message as the transport sends it (bodies already opened). */
export interface MailEnvelope {
  to: string;
  subject: string;
  text: string;
  html: string;
}

/** A refusal that trying again will not change (a 5xx answer, an address the guard refuses). */
export class PermanentMailError extends Error {
  override name = 'PermanentMailError';
}

export interface SmtpSettings {
  /** smtp://user:pass@host:port or smtps://… (PADDOCK_SMTP_URL). */
  url: string;
  from: string;
}

const CONNECT_TIMEOUT_MS = 10_000;
const SOCKET_TIMEOUT_MS = 30_000;

/**
 * Sends through the operator's SMTP server. The server's name is resolved and
 * checked by the outbound guard first, and nodemailer connects to that
 * checked address (TLS still verifies the certificate against the name), so
 * the guard's rules hold for SMTP as for provider base URLs.
 */
export class SmtpTransport {
  private readonly url: URL;

  constructor(
    private readonly settings: SmtpSettings,
    private readonly guard: OutboundGuard,
  ) {
    this.url = new URL(settings.url);
  }

  async send(message: MailEnvelope): Promise<void> {
    const secure = this.url.protocol === 'smtps:';
    const port = Number(this.url.port) || (secure ? 465 : 587);
    const host = this.url.hostname.replace(/^\[|\]$/g, '');
    let address: string;
    try {
      // resolve() throws when no address is allowed, so there is a first one.
      address = (await this.guard.resolve(host, port))[0]!.address;
    } catch (err) {
      if ((err as { code?: string }).code === 'EOUTBOUNDREFUSED') {
        throw new PermanentMailError(`the SMTP server: ${(err as Error).message}`);
      }
      throw err;
    }
    const transport = nodemailer.createTransport({
      host: address,
      port,
      secure,
      // smtp:// must upgrade with STARTTLS, so nobody on the path can strip it and read the password
      // and the links; a server on PADDOCK_ALLOW_PRIVATE_UPSTREAMS (a local catcher) may stay plain.
      requireTLS: !secure && !this.guard.allowListed(host),
      ...(this.url.username
        ? {
            auth: {
              user: decodeURIComponent(this.url.username),
              pass: decodeURIComponent(this.url.password),
            },
          }
        : {}),
      ...(net.isIP(host) === 0 ? { tls: { servername: host } } : {}),
      connectionTimeout: CONNECT_TIMEOUT_MS,
      greetingTimeout: CONNECT_TIMEOUT_MS,
      socketTimeout: SOCKET_TIMEOUT_MS,
    });
    try {
      await transport.sendMail({ from: this.settings.from, ...message });
    } catch (err) {
      const code = (err as { responseCode?: number }).responseCode;
      // 5xx: the server refused for good (no such mailbox, not allowed to relay).
      if (code !== undefined && code >= 500) throw new PermanentMailError((err as Error).message);
      throw err;
    } finally {
      transport.close();
    }
  }
}
