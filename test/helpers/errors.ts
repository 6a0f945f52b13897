import { ConfigError } from '../../src/shared/errors.js';

/** Run `fn` and return the ConfigError it throws; fail the test if it throws nothing or another error. */
export function configErrorOf(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error('expected a ConfigError');
}
