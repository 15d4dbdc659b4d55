// ESLint rule `lk/layer-boundaries`: the architecture of docs/architecture.md, enforced.
//
// Data flows one way (log -> speed and batch -> views -> serving) and the layers meet only
// through the log, the files and topics they publish and the contracts declared in services/.
// So, for production code (tests may reach into adapters, and test/ and bench/ may use anything):
// - services/ (the shared core) imports nothing outside services/;
// - a layer (streaming/, batch/, serving/) imports its own folder and services/, never another
//   layer, and never an adapter's internals (services/log/kafka/, services/log/embedded/: the
//   log is used through services/log/eventLog.ts and openLog.ts);
// - only cli/ (the `lk` entry point) imports the layers; nothing imports cli/.
import { dirname, relative, resolve, sep } from 'node:path';

const LAYERS = ['streaming', 'batch', 'serving'];
const ADAPTERS = ['services/log/kafka/', 'services/log/embedded/'];

/** The top-level folder of a path relative to the repository, and whether it is a test. */
function place(rel) {
  const parts = rel.split('/');
  return { top: parts[0], test: parts.includes('__tests__') || parts[0] === 'test' || parts[0] === 'bench' };
}

function violation(fromRel, toRel) {
  const from = place(fromRel);
  const to = place(toRel);
  if (!['cli', 'services', ...LAYERS].includes(from.top)) return undefined; // tools, tests, benchmarks, root config
  if (to.top === 'test' || to.top === 'bench' || to.top === 'scripts')
    return from.test ? undefined : `production code may not import ${to.top}/`;
  if (to.top === 'cli' && from.top !== 'cli') return 'only the entry point (bin/) runs cli/: nothing imports it';
  if (from.top === 'services' && to.top !== 'services')
    return `the shared core (services/) may not import ${to.top}/: layers depend on the core, never the other way`;
  if (LAYERS.includes(from.top)) {
    if (LAYERS.includes(to.top) && to.top !== from.top)
      return `${from.top}/ may not import ${to.top}/: layers meet only through the log, their files and topics, and the contracts in services/`;
    if (!from.test && ADAPTERS.some((a) => toRel.startsWith(a)))
      return `${from.top}/ may not import a log adapter's internals (${toRel}): use services/log/eventLog.ts and openLog.ts`;
  }
  return undefined;
}

export const layerBoundaries = {
  meta: {
    type: 'problem',
    docs: { description: 'imports must follow the layer boundaries of docs/architecture.md' },
    schema: [],
    messages: { boundary: '{{why}} (import of {{target}}; see docs/architecture.md)' },
  },
  create(context) {
    const root = context.cwd ?? process.cwd();
    const file = context.filename ?? context.getFilename();
    const fromRel = relative(root, file).split(sep).join('/');
    const check = (node, spec) => {
      if (typeof spec !== 'string' || !spec.startsWith('.')) return;
      const toRel = relative(root, resolve(dirname(file), spec))
        .split(sep)
        .join('/');
      const why = violation(fromRel, toRel);
      if (why) context.report({ node, messageId: 'boundary', data: { why, target: toRel } });
    };
    return {
      ImportDeclaration: (node) => check(node, node.source.value),
      ExportNamedDeclaration: (node) => node.source && check(node, node.source.value),
      ExportAllDeclaration: (node) => check(node, node.source.value),
      ImportExpression: (node) => node.source.type === 'Literal' && check(node, node.source.value),
    };
  },
};

export default { rules: { 'layer-boundaries': layerBoundaries } };
