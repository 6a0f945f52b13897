/**
 * pino: JSON lines by default (for log shippers), pretty output when stderr is a TTY (for people).
 * Secrets never reach a log line: credentials and auth headers are redacted at the source.
 */
import { pino, type Logger } from 'pino';
import type { LogLevel } from './config.js';

export type { Logger };

export interface LoggerOptions {
  level?: LogLevel;
  /** Force pretty (true) or JSON (false); default: pretty exactly when stderr is a TTY. */
  pretty?: boolean;
  /** Fixed fields on every line, e.g. `{ component: 'worker', workerId }`. */
  base?: Record<string, unknown>;
}

const REDACT_PATHS = [
  'password',
  '*.password',
  'secretAccessKey',
  '*.secretAccessKey',
  'token',
  '*.token',
  'authorization',
  '*.authorization',
  'headers.authorization',
  'req.headers.authorization',
];

export function createLogger(options: LoggerOptions = {}): Logger {
  const pretty = options.pretty ?? Boolean(process.stderr.isTTY);
  return pino({
    level: options.level ?? 'info',
    base: { pid: process.pid, ...options.base },
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    // Logs go to stderr so stdout stays clean for --json output and piping.
    transport: pretty
      ? { target: 'pino-pretty', options: { destination: 2, colorize: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' } }
      : undefined,
  }, pretty ? undefined : pino.destination({ dest: 2, sync: false }));
}

/** A logger that drops everything (tests, library use). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
