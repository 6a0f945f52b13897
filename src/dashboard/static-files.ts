/**
 * The front end: a handful of static files read once at start-up from `public/`. Only files present
 * then are served, by exact name, so no request path ever reaches the file system.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';
import { NO_QUERY, object, str } from './schemas.js';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.ico': 'image/x-icon',
};

export const PUBLIC_DIR = fileURLToPath(new URL('./public/', import.meta.url));

export function loadStaticFiles(dir = PUBLIC_DIR): Map<string, { body: Buffer; type: string }> {
  const files = new Map<string, { body: Buffer; type: string }>();
  for (const name of readdirSync(dir)) {
    const type = TYPES[extname(name)];
    if (type) files.set(name, { body: readFileSync(join(dir, name)), type });
  }
  return files;
}

export function installStaticFiles(app: FastifyInstance, files: Map<string, { body: Buffer; type: string }>): void {
  const send = (name: string) => {
    const file = files.get(name);
    if (!file) throw new Error(`dashboard asset ${name} is missing from ${PUBLIC_DIR}`);
    return file;
  };
  const index = send('index.html');
  const login = send('login.html');
  // The UI routes by URL fragment, so every page is index.html.
  app.get('/', { schema: { querystring: NO_QUERY } }, async (_req, reply) => reply.type(index.type).header('Cache-Control', 'no-cache').send(index.body));
  // login.js reads `next` and `failed` in the browser; the server only checks their shape.
  const loginQuery = object({ next: str(2048), failed: str(8) });
  app.get('/login', { schema: { querystring: loginQuery } }, async (_req, reply) => reply.type(login.type).header('Cache-Control', 'no-cache').send(login.body));
  app.get<{ Params: { name: string } }>('/static/:name', { schema: { params: object({ name: str(100) }, ['name']), querystring: NO_QUERY } }, async (req, reply) => {
    const file = files.get(req.params.name);
    if (!file || req.params.name.endsWith('.html')) return reply.code(404).send({ error: 'NOT_FOUND', message: `no asset "${req.params.name}"` });
    return reply.type(file.type).header('Cache-Control', 'no-cache').send(file.body);
  });
}
