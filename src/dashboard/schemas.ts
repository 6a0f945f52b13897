/**
 * JSON schemas of every route's query string, path parameters and body, validated by Fastify
 * itself before a handler runs. A repeated parameter (`key=a&key=b`) arrives as an array and is
 * refused here with 400, instead of reaching Redis as extra command arguments; numbers and enums
 * are checked here too, so handlers receive values of the declared types only.
 *
 * Unknown query parameters are dropped (cache busters stay harmless); an empty value counts as
 * absent (`?class=` means no class filter), as HTML forms send empty fields. Fastify's Ajv coerces
 * types the unambiguous way (`"5"` to 5 in a query; a lone string where a JSON body wants a list
 * of strings becomes a list of one); what cannot be coerced is refused.
 */
import type { FastifyError, FastifyInstance, FastifyRequest } from 'fastify';

type Schema = Record<string, unknown>;

/** An object of named properties; nothing else passes (unknown query parameters are removed). */
export function object(properties: Record<string, Schema>, required: string[] = []): Schema {
  return { type: 'object', properties, required, additionalProperties: false };
}

export const str = (maxLength: number, minLength = 1): Schema => ({ type: 'string', minLength, maxLength });
export const int = (minimum: number, maximum: number): Schema => ({ type: 'integer', minimum, maximum });
export const oneOf = (values: readonly string[]): Schema => ({ type: 'string', enum: [...values] });
export const probability: Schema = { type: 'number', minimum: 0, maximum: 1 };

/** Run ids are checked in full by `validateRunId`; the schema only bounds the type and size. */
export const RUN_ID = str(200);
export const RUN_PARAMS = object({ id: RUN_ID }, ['id']);
/** For routes that take no query parameters (unknown ones are dropped, repeated ones too). */
export const NO_QUERY = object({});
/** A source key: S3 allows 1024 bytes; a UTF-8 character is at most 4 of them. */
export const SOURCE_KEY = str(4096);

/**
 * Strip empty query values before validation, and turn Fastify's validation errors into messages
 * that name the parameter (`query parameter "key" is given 2 times; give it once`).
 */
export function installSchemaSupport(app: FastifyInstance): void {
  app.addHook('preValidation', async (request) => {
    const query = request.query as Record<string, unknown> | undefined;
    if (query && typeof query === 'object') for (const [k, v] of Object.entries(query)) if (v === '') delete query[k];
  });
}

/** The `{error, message}` answer for a schema violation, or undefined when `err` is not one. */
export function validationAnswer(err: FastifyError, request: FastifyRequest): { error: string; message: string } | undefined {
  const first = err.validation?.[0];
  if (!first) return undefined;
  const context = err.validationContext ?? 'body';
  const params = (first.params ?? {}) as Record<string, unknown>;
  const path = first.instancePath.split('/').slice(1);
  const name = path[0] ?? (typeof params.missingProperty === 'string' ? params.missingProperty : undefined);
  const source: unknown = context === 'querystring' ? request.query : context === 'params' ? request.params : context === 'body' ? request.body : request.headers;
  const value = name === undefined ? undefined : (source as Record<string, unknown> | null | undefined)?.[name];
  const what = context === 'querystring' ? 'query parameter' : context === 'params' ? 'path parameter' : context === 'body' ? 'body field' : 'header';
  const code = context === 'querystring' ? 'BAD_QUERY' : context === 'body' ? 'BAD_BODY' : 'BAD_REQUEST';
  const hint = (request.routeOptions.config as { bodyHint?: string } | undefined)?.bodyHint;
  if (context === 'body' && hint) return { error: code, message: `${hint} (${describe(first.keyword, params, first.message, name, path)})` };
  if (name === undefined) return { error: code, message: `${what}s: ${first.message ?? 'invalid'}` };
  if (context === 'querystring' && Array.isArray(value)) {
    return { error: code, message: `${what} "${name}" is given ${value.length} times; give it once` };
  }
  return { error: code, message: `${what} "${name}" ${describe(first.keyword, params, first.message, name, path)}${shown(value)}` };
}

function describe(keyword: string, params: Record<string, unknown>, fallback: string | undefined, name: string | undefined, path: string[]): string {
  const at = path.length > 1 ? ` (at ${path.join('.')})` : '';
  switch (keyword) {
    case 'required':
      return name === undefined ? 'is required' : `is required`;
    case 'enum':
      return `must be one of ${(params.allowedValues as unknown[]).join(', ')}${at}`;
    case 'minimum':
    case 'maximum':
    case 'exclusiveMinimum':
    case 'exclusiveMaximum':
      return `must be ${String(params.comparison)} ${String(params.limit)}${at}`;
    case 'type':
      return `must be ${params.type === 'integer' ? 'an integer' : `a ${String(params.type)}`}${at}`;
    case 'minLength':
      return Number(params.limit) <= 1 ? `must not be empty${at}` : `must have at least ${String(params.limit)} characters${at}`;
    case 'maxLength':
      return `must have at most ${String(params.limit)} characters${at}`;
    case 'minItems':
      return `must have at least ${String(params.limit)} items${at}`;
    case 'maxItems':
      return `must have at most ${String(params.limit)} items${at}`;
    default:
      return `${fallback ?? 'is invalid'}${at}`;
  }
}

function shown(value: unknown): string {
  if (value === undefined || value === null || typeof value === 'object') return '';
  const s = String(value);
  return `, got "${s.length > 80 ? `${s.slice(0, 80)}…` : s}"`;
}
