import { fuzzOpenApi } from './openapi-fuzz.ts';

// One database is enough: one request at a time tests validation and error mapping, not the database.
//
// One share of the OpenAPI fuzz (see openapi-fuzz.ts): its own app, beside the other files.
fuzzOpenApi(import.meta.url);
