/**
 * Security headers on every response. The UI has no inline script or style, so its policy can be
 * strict. bull-board's bundled React UI injects <style> elements at runtime and needs
 * 'unsafe-inline' styles (never scripts) under its own mount.
 */
import type { FastifyInstance } from 'fastify';

export const UI_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data: blob:",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

export const BULL_BOARD_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data:",
  "font-src 'self' data:",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'self'",
  "frame-ancestors 'none'",
].join('; ');

/** Objects proxied from S3 must never run as a document, even if one is opened directly. */
export const OBJECT_CSP = "default-src 'none'; style-src 'unsafe-inline'; sandbox";

export function installSecurityHeaders(app: FastifyInstance, bullBoardBase: string): void {
  app.addHook('onSend', async (request, reply, payload) => {
    reply.header('X-Content-Type-Options', 'nosniff');
    reply.header('Referrer-Policy', 'no-referrer');
    reply.header('X-Frame-Options', 'DENY');
    reply.header('Cross-Origin-Opener-Policy', 'same-origin');
    if (!reply.hasHeader('Content-Security-Policy')) {
      reply.header('Content-Security-Policy', request.url.startsWith(bullBoardBase) ? BULL_BOARD_CSP : UI_CSP);
    }
    return payload;
  });
}
