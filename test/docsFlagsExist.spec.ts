/**
 * Docs that promise only what the code has: every `--flag` that README.md and docs/*.md name for
 * an `lk` command exists in that command's `--help` (the real `lk`, run as users run it).
 *
 * Where a flag is named, and which command it is held to:
 * - in an `lk ...` command (a code span, a line of a code block, `npm run demo -- ...`): the
 *   command its words name (`lk batch run --full` is held to `lk batch run`; a group such as
 *   `lk batch` also takes its default subcommand's flags);
 * - in the first cell of a table: the commands the nearest heading names (`### \`lk serve\``, or
 *   the page's title, `# The speed layer (\`lk speed\`)`), narrowed by a qualifier in the cell
 *   (`--full` (`run`), `savepoint --name`); with no command in the headings, any command;
 * - anywhere else in a code span of its own (`--threads`): some `lk` command must have it.
 * Flags of other tools (`docker compose up --build`, `npx vitest run --config`) are not `lk`'s.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runLk } from './cli.ts';

const REPO = new URL('..', import.meta.url).pathname;
const DOCS = [
  'README.md',
  ...readdirSync(join(REPO, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .map((f) => `docs/${f}`),
];
const FLAG = /--[a-z][a-z0-9-]*/g;
/** Flags of other tools that the docs name in a code span of their own, with the tool. */
const OTHER_TOOLS_FLAGS: Record<string, string> = {
  '--build': 'docker compose up',
  '--iptables': 'dockerd',
  '--bridge': 'dockerd',
  '--include': 'debootstrap',
  '--command-config': "Kafka's own tools (kafka-topics.sh, ...)",
  '--add-scram': 'kafka-storage.sh format',
};

interface Command {
  path: string[];
  flags: Set<string>;
  subcommands: string[];
  /** The subcommand run when the group is named alone (its description ends with "(default)"). */
  defaultSubcommand?: string;
}

/** Parses one `lk ... --help`: the flags of its Options section, the names of its Commands section. */
function parseHelp(path: string[], help: string): Command {
  const flags = new Set<string>();
  const entries: { name: string; text: string }[] = [];
  let section: 'options' | 'commands' | undefined;
  for (const line of help.split('\n')) {
    if (/^Options:/.test(line)) section = 'options';
    else if (/^Commands:/.test(line)) section = 'commands';
    else if (/^\S/.test(line)) section = undefined;
    else if (section === 'options') {
      // A term line has two spaces before it; wrapped descriptions are indented further.
      const term = /^ {2}(?:-\w, )?(--[a-z][\w-]*)/.exec(line);
      if (term) flags.add(term[1]!);
    } else if (section === 'commands') {
      const entry = /^ {2}([a-z][\w-]*)\b(.*)$/.exec(line);
      if (entry) entries.push({ name: entry[1]!, text: entry[2]! });
      else if (entries.length > 0) entries.at(-1)!.text += ` ${line.trim()}`;
    }
  }
  const subcommands = entries.map((e) => e.name).filter((n) => n !== 'help');
  const defaultSubcommand = entries.find((e) => /\(default\)\s*$/.test(e.text))?.name;
  return { path, flags, subcommands, ...(defaultSubcommand ? { defaultSubcommand } : {}) };
}

/** Every `lk` command, from `lk --help` down, each with the flags its own `--help` lists. */
async function commandTree(): Promise<Map<string, Command>> {
  const tree = new Map<string, Command>();
  let level: string[][] = [[]];
  while (level.length > 0) {
    const helps = await Promise.all(level.map((path) => runLk([...path, '--help'])));
    const next: string[][] = [];
    level.forEach((path, i) => {
      const { code, stdout, stderr } = helps[i]!;
      if (code !== 0) throw new Error(`lk ${path.join(' ')} --help exited with ${code}: ${stderr}`);
      const command = parseHelp(path, stdout);
      tree.set(path.join(' '), command);
      for (const sub of command.subcommands) next.push([...path, sub]);
    });
    level = next;
  }
  return tree;
}

interface Mention {
  where: string;
  flag: string;
  /** The commands that may have it (any one of them); undefined: any `lk` command. */
  commands?: string[][];
  /** How the doc names it, for the failure message. */
  said: string;
}

/** The command path that the words after `lk` name, as far as they are subcommands. */
function resolvePath(words: string[], tree: Map<string, Command>, from: string[] = []): string[] {
  const path = [...from];
  for (const w of words) {
    if (!tree.get(path.join(' '))?.subcommands.includes(w)) break;
    path.push(w);
  }
  return path;
}

/** `lk <words> --flag ...` (or `npm run demo -- ...`): every flag, held to the command named. */
function commandMentions(text: string, where: string, tree: Map<string, Command>): Mention[] {
  const m = /^(?:\$\s*)?(?:npx\s+)?(?:lk\s+(.*)|npm run demo\s*(?:--\s*(.*))?)$/.exec(text.trim());
  if (!m) return [];
  const args = m[1] !== undefined ? m[1] : `demo ${m[2] ?? ''}`;
  const words = args.split(/\s+/).filter(Boolean);
  const path = resolvePath(words, tree);
  return [...args.matchAll(FLAG)].map(([flag]) => ({ where, flag, commands: [path], said: `lk ${args}`.trim() }));
}

/** `lk speed`, `lk speed savepoints list|delete` in a heading: the commands it names. */
function headingCommands(heading: string, tree: Map<string, Command>): string[][] {
  const out: string[][] = [];
  for (const [, span] of heading.matchAll(/`([^`]+)`/g)) {
    const m = /^(?:lk\s+(.+)|npm run demo)$/.exec(span!.trim());
    if (!m) continue;
    const words = (m[1] ?? 'demo').split(/\s+/);
    const last = words.at(-1)!;
    for (const alternative of last.split('|')) out.push(resolvePath([...words.slice(0, -1), alternative], tree));
  }
  return out;
}

/** Every mention of a flag in one markdown file. */
function mentionsIn(doc: string, tree: Map<string, Command>): Mention[] {
  const lines = readFileSync(join(REPO, doc), 'utf8').split('\n');
  const mentions: Mention[] = [];
  /** Headings above the current line, by level: the commands each names. */
  const headings: { level: number; commands: string[][] }[] = [];
  const context = () => [...headings].reverse().find((h) => h.commands.length > 0)?.commands;
  let fence = false;
  let paragraph: { start: number; text: string } | undefined;
  const flushParagraph = () => {
    if (paragraph) mentions.push(...spanMentions(paragraph.text, `${doc}:${paragraph.start}`, tree));
    paragraph = undefined;
  };
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const where = `${doc}:${i + 1}`;
    if (/^\s*```/.test(line)) {
      flushParagraph();
      fence = !fence;
      continue;
    }
    if (fence) {
      // A code block line: an `lk` command (continued with a trailing backslash), or another tool's.
      let text = line;
      while (text.endsWith('\\') && i + 1 < lines.length) text = text.slice(0, -1) + ' ' + lines[++i]!;
      mentions.push(...commandMentions(text.replace(/\s+#.*$/, ''), where, tree));
      continue;
    }
    const heading = /^(#+)\s+(.*)$/.exec(line);
    if (heading) {
      flushParagraph();
      const level = heading[1]!.length;
      while (headings.length > 0 && headings.at(-1)!.level >= level) headings.pop();
      headings.push({ level, commands: headingCommands(heading[2]!, tree) });
      continue;
    }
    if (line.startsWith('|')) {
      flushParagraph();
      const [first = '', ...rest] = line.split('|').slice(1);
      mentions.push(...tableMentions(first, where, context(), tree));
      mentions.push(...spanMentions(rest.join('|'), where, tree));
      continue;
    }
    if (line.trim() === '') flushParagraph();
    else paragraph = paragraph ? { ...paragraph, text: `${paragraph.text} ${line}` } : { start: i + 1, text: line };
  }
  flushParagraph();
  return mentions;
}

/** Code spans in prose: an `lk` command, or a flag of its own (some command must have it). */
function spanMentions(text: string, where: string, tree: Map<string, Command>): Mention[] {
  const out: Mention[] = [];
  for (const [, span] of text.matchAll(/`([^`]+)`/g)) {
    const s = span!.trim();
    if (/^(?:npx\s+)?lk\s|^npm run demo\b/.test(s)) out.push(...commandMentions(s, where, tree));
    else if (s.startsWith('--')) for (const [flag] of s.matchAll(FLAG)) out.push({ where, flag, said: s });
  }
  return out;
}

/** A table's first cell: its flags belong to the heading's commands, narrowed by a qualifier. */
function tableMentions(cell: string, where: string, commands: string[][] | undefined, tree: Map<string, Command>): Mention[] {
  const out: Mention[] = [];
  // A qualifier after the flags: `--json` (`versions`, `diff`), `--full` (`run`).
  const qualifier = /\)\s*$/.test(cell.trim()) ? /\(([^()]*)\)\s*$/.exec(cell.trim())?.[1] : undefined;
  const names = qualifier ? [...qualifier.matchAll(/`?([a-z][\w-]*)`?/g)].map((m) => m[1]!) : [];
  for (const [, span] of cell.matchAll(/`([^`]+)`/g)) {
    const s = span!.trim();
    if (/^(?:npx\s+)?lk\s/.test(s)) {
      out.push(...commandMentions(s, where, tree));
      continue;
    }
    if (names.includes(s)) continue; // the qualifier itself
    const flags = [...s.matchAll(FLAG)].map(([f]) => f);
    if (flags.length === 0) continue;
    // Words before the flags name a subcommand (`savepoint --name`), or another tool (`debootstrap --variant`).
    const words = s.slice(0, s.indexOf('--')).trim().split(/\s+/).filter(Boolean);
    let held = commands;
    if (words.length > 0) {
      if (!held) continue;
      held = held.map((c) => resolvePath(words, tree, c)).filter((c, k) => c.length === held![k]!.length + words.length);
      if (held.length === 0) continue;
    }
    if (held && names.length > 0) {
      const narrowed = held.filter((c) => names.includes(c.at(-1)!));
      held = narrowed.length > 0 ? narrowed : held.flatMap((c) => names.map((n) => resolvePath([n], tree, c)));
    }
    for (const flag of flags) out.push({ where, flag, ...(held ? { commands: held } : {}), said: cell.trim() });
  }
  return out;
}

/** The flags a command takes: its own, and for a group named alone, its default subcommand's. */
function flagsOf(path: string[], tree: Map<string, Command>): Set<string> {
  const command = tree.get(path.join(' '));
  if (!command) return new Set();
  const flags = new Set(command.flags);
  if (command.defaultSubcommand) for (const f of tree.get([...path, command.defaultSubcommand].join(' '))?.flags ?? []) flags.add(f);
  return flags;
}

describe('every flag the docs name exists', () => {
  it('in the --help of the lk command the docs name it for', { timeout: 180_000 }, async () => {
    const tree = await commandTree();
    expect(tree.size, 'lk and its commands').toBeGreaterThan(15);
    const all = new Set([...tree.values()].flatMap((c) => [...c.flags]));
    const problems: string[] = [];
    let checked = 0;
    for (const doc of DOCS) {
      for (const m of mentionsIn(doc, tree)) {
        checked++;
        const name = (path: string[]) => ['lk', ...path].join(' ');
        if (m.commands === undefined) {
          if (!all.has(m.flag) && !(m.flag in OTHER_TOOLS_FLAGS))
            problems.push(`${m.where}: \`${m.said}\` names ${m.flag}, which no lk command has`);
        } else if (!m.commands.some((c) => flagsOf(c, tree).has(m.flag))) {
          problems.push(`${m.where}: \`${m.said}\` names ${m.flag} for ${m.commands.map(name).join(' / ')}, whose --help has no ${m.flag}`);
        }
      }
    }
    expect(checked, 'flags named in the docs').toBeGreaterThan(200);
    expect(problems, `flags the docs name that the commands do not have:\n${problems.join('\n')}`).toEqual([]);
  });
});
