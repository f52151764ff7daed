/**
 * Domain errors. Services throw these; one error handler maps them to the
 * `{"error": {"code", "message", "details"}}` shape (DESIGN.md "Errors").
 */
export class AppError extends Error {
  constructor(
    readonly statusCode: number,
    readonly code: string,
    message: string,
    readonly details?: Record<string, unknown>,
    readonly headers?: Record<string, string>,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

export class ValidationError extends AppError {
  constructor(message: string, fields?: Record<string, string>) {
    super(400, 'validation_failed', message, fields ? { fields } : undefined);
  }
}

export class BadRequestError extends AppError {
  constructor(code: string, message: string, details?: Record<string, unknown>) {
    super(400, code, message, details);
  }
}

export class UnauthorizedError extends AppError {
  constructor(code: string, message: string) {
    super(401, code, message);
  }
}

export class ForbiddenError extends AppError {
  constructor(code: string, message: string, details?: Record<string, unknown>) {
    super(403, code, message, details);
  }
}

export class NotFoundError extends AppError {
  constructor(kind: string, id?: string) {
    super(404, 'not_found', id ? `${kind} ${id} was not found` : `${kind} was not found`, {
      kind,
      ...(id ? { id } : {}),
    });
  }
}

export class ConflictError extends AppError {
  constructor(code: string, message: string, details?: Record<string, unknown>) {
    super(409, code, message, details);
  }
}

export class GoneError extends AppError {
  constructor(code: string, message: string) {
    super(410, code, message);
  }
}

export class PayloadTooLargeError extends AppError {
  constructor(message: string, details?: Record<string, unknown>) {
    super(413, 'payload_too_large', message, details);
  }
}

/** 429 with Retry-After in seconds; `details` names the limit (`{limit: "login_ip"}`). */
export class RateLimitedError extends AppError {
  constructor(message: string, retryAfterSec: number, details?: Record<string, unknown>) {
    super(
      429,
      'rate_limited',
      message,
      { ...details, retry_after_sec: retryAfterSec },
      {
        'retry-after': String(retryAfterSec),
      },
    );
  }
}

export class ServiceUnavailableError extends AppError {
  constructor(code: string, message: string) {
    super(503, code, message);
  }
}
