import { type TSchema, Type } from 'typebox';

/** Shared TypeBox pieces for route schemas. */
export const ErrorResponse = Type.Object(
  {
    error: Type.Object({
      code: Type.String({ description: 'snake_case error code' }),
      message: Type.String(),
      details: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
    }),
  },
  { $id: 'Error' },
);

export const Timestamp = Type.String({ format: 'date-time' });
export const NullableTimestamp = Type.Union([Type.String({ format: 'date-time' }), Type.Null()]);

export function Nullable<T extends TSchema>(schema: T) {
  return Type.Union([schema, Type.Null()]);
}

export function Paginated<T extends TSchema>(item: T) {
  return Type.Object({ data: Type.Array(item), next_cursor: Type.Union([Type.String(), Type.Null()]) });
}

/** A list's query string: the page (`limit`, `cursor`), then the list's own filters; unknown ones are refused. */
export function ListQuery<T extends Record<string, TSchema>>(filters: T) {
  return Type.Object(
    {
      limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 200, default: 50 })),
      cursor: Type.Optional(Type.String({ maxLength: 400 })),
      ...filters,
    },
    { additionalProperties: false },
  );
}

export const PageQuery = ListQuery({});

export const IdParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 100 }) });

/** The error responses most routes can give, for the OpenAPI document. */
export function errorResponses(...statuses: number[]): Record<number, typeof ErrorResponse> {
  const out: Record<number, typeof ErrorResponse> = {};
  for (const s of [400, 401, 403, ...statuses]) out[s] = ErrorResponse;
  return out;
}

/** Body objects refuse unknown fields (see validation.ts). */
export function Body<T extends Record<string, TSchema>>(properties: T, description?: string) {
  return Type.Object(properties, { additionalProperties: false, ...(description ? { description } : {}) });
}
