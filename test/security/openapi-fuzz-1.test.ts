import { fuzzOpenApi } from './openapi-fuzz.ts';

// One share of the OpenAPI fuzz (see openapi-fuzz.ts): its own app, beside the other files.
fuzzOpenApi(import.meta.url);
