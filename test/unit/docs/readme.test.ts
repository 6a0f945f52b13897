/**
 * The README must stay true: its CLI reference lists every flag each command really has (and no
 * flag it does not), and its configuration table lists exactly the environment variables the code
 * reads. Both are checked against the real definitions (commander commands, ENV_VARS).
 */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { COMMAND_LOADERS } from '../../../src/commands.js';
import { ENV_VARS } from '../../../src/shared/config.js';

const README = readFileSync(new URL('../../../README.md', import.meta.url), 'utf8');

function section(title: string): string {
  const start = README.indexOf(`\n## ${title}\n`);
  if (start < 0) throw new Error(`README has no "## ${title}" section`);
  const end = README.indexOf('\n## ', start + 4);
  return README.slice(start, end < 0 ? undefined : end);
}

/** `gradcam-audit <command> ...` entries of the CLI reference block, with their continuation lines. */
function referenceEntries(): Map<string, string> {
  const block = /```\n([\s\S]*?)```/.exec(section('CLI reference'))?.[1] ?? '';
  const entries = new Map<string, string>();
  let current: string | null = null;
  for (const line of block.split('\n')) {
    const m = /^gradcam-audit (\w+)/.exec(line);
    if (m) {
      current = m[1] as string;
      entries.set(current, line);
    } else if (current && /^\s/.test(line)) {
      entries.set(current, `${entries.get(current)}\n${line}`);
    }
  }
  return entries;
}

describe('README', () => {
  it('documents every command and every flag of each command, and no flag that does not exist', async () => {
    const entries = referenceEntries();
    expect([...entries.keys()].sort()).toEqual(Object.keys(COMMAND_LOADERS).sort());
    for (const [name, load] of Object.entries(COMMAND_LOADERS)) {
      const command = await load();
      const real = command.options.map((o) => o.long).filter((f): f is string => f !== undefined);
      const documented = [...new Set((entries.get(name) ?? '').match(/--[a-z][a-z0-9-]*/g) ?? [])];
      expect(real.filter((f) => !documented.includes(f)), `flags of ${name} missing from the README`).toEqual([]);
      expect(documented.filter((f) => !real.includes(f)), `README flags that ${name} does not have`).toEqual([]);
    }
  });

  it('uses only real commands and flags wherever it shows a gradcam-audit command line', async () => {
    // Code only: fenced blocks and inline code spans (prose says "gradcam-audit audits ...").
    const fenced = [...README.matchAll(/```\w*\n([\s\S]*?)```/g)].map((m) => m[1] as string);
    const inline = [...README.replace(/```\w*\n[\s\S]*?```/g, '').matchAll(/`([^`\n]+)`/g)].map((m) => m[1] as string);
    const uses = [...fenced, ...inline]
      .flatMap((code) => [...code.matchAll(/(?:^|[\s(])gradcam-audit (\w+)([^\n]*)/gm)])
      .map((m) => ({ command: m[1] as string, flags: (m[2] ?? '').match(/--[a-z][a-z0-9-]*/g) ?? [] }));
    expect(uses.length).toBeGreaterThan(10);
    for (const use of uses) {
      const load = COMMAND_LOADERS[use.command];
      expect(load, `README runs "gradcam-audit ${use.command}", which is not a command`).toBeDefined();
      const real = new Set((await (load as () => Promise<Command>)()).options.map((o) => o.long));
      for (const flag of use.flags) expect(real.has(flag), `README: gradcam-audit ${use.command} ${flag}`).toBe(true);
    }
  });

  it('lists exactly the environment variables the code reads', () => {
    const table = section('Configuration');
    const documented = [...table.matchAll(/^\| `([A-Z0-9_]+)` \|/gm)].map((m) => m[1]);
    expect([...documented].sort()).toEqual(Object.keys(ENV_VARS).sort());
  });
});
