/**
 * Flag errors exit 2 on every subcommand (the README's promise), with commander's own message;
 * help and version exit 0. The program is the one the binary runs, parsed in-process; one real
 * child process checks the binary's exit status end to end.
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { buildProgram, runCli } from '../../../src/cli-program.js';
import { CLI_BIN, REPO_ROOT } from '../../helpers/cluster.js';

async function run(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await runCli(['node', 'gradcam-audit', ...args], { writeOut: (s) => (out += s), writeErr: (s) => (err += s) });
  return { code, out, err };
}

describe('CLI exit codes', () => {
  it('exits 2 with the unknown flag named, on every subcommand', async () => {
    const program = await buildProgram();
    const names = program.commands.map((c) => c.name());
    expect(names).toEqual(expect.arrayContaining(['explain', 'worker', 'dashboard', 'enqueue', 'status', 'demo']));
    for (const command of program.commands) {
      const name = command.name();
      // Satisfy required arguments and options, so the unknown flag is the only error.
      const required = [
        ...command.registeredArguments.filter((a) => a.required).map(() => 'x'),
        ...command.options.filter((o) => o.mandatory).flatMap((o) => [o.long ?? '', 'x']),
      ];
      const { code, err } = await run([name, ...required, '--no-such-flag']);
      expect(code, name).toBe(2);
      expect(err, name).toContain("unknown option '--no-such-flag'");
    }
  });

  it.each([
    [['enqueue'], "missing required argument 'source'"],
    [['explain', '--weights', 'w.h5'], "missing required argument 'images'"],
    [['explain', 'a.jpg'], "required option '--weights <src>' not specified"],
    [['explain', 'a.jpg', '--weights'], "option '--weights <src>' argument missing"],
    [['status', 'run-a', 'run-b'], 'too many arguments'],
    [['no-such-command'], "unknown command 'no-such-command'"],
    [['--no-such-flag'], "unknown option '--no-such-flag'"],
  ])('exits 2 for %j', async (args, message) => {
    const { code, err } = await run(args);
    expect(code).toBe(2);
    expect(err).toContain(message);
  });

  it('exits 0 for help and version', async () => {
    for (const args of [['--help'], ['enqueue', '--help'], ['--version']]) {
      const { code, out } = await run(args);
      expect(code, args.join(' ')).toBe(0);
      expect(out.length, args.join(' ')).toBeGreaterThan(0);
    }
  });

  it('the binary itself exits 2 on a flag error and 2 with a clear message for --weights <directory>', () => {
    const cli = (args: string[]) => spawnSync(process.execPath, [CLI_BIN, ...args], { cwd: REPO_ROOT, encoding: 'utf8', timeout: 60_000, env: { ...process.env, LOG_LEVEL: 'silent' } });
    const flag = cli(['worker', '--no-such-flag']);
    expect(flag.status, flag.stderr).toBe(2);
    expect(flag.stderr).toContain("unknown option '--no-such-flag'");
    const dir = cli(['explain', 'samples/synthetic/00-circle.png', '--weights', 'models/demo', '--out', 'test-artifacts/never-written']);
    expect(dir.status, dir.stderr).toBe(2);
    expect(dir.stderr).toContain('--weights:');
    expect(dir.stderr).toContain('models/demo is a directory');
    expect(dir.stderr).toContain('model.json');
    expect(dir.stderr).not.toContain('EISDIR');
    expect(dir.stderr).not.toMatch(/\n\s+at /);
  });
});
