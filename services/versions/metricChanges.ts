/**
 * Can state built under one set of metric definitions be carried over to another? Used when a
 * job restarts from its checkpoints or from a savepoint with a changed metric file. The rule:
 * carry over only what stays exact, refuse everything else with a precise message; never start
 * with silently wrong state.
 *
 * Carried over: removed metrics and granularities (their state is dropped), a smaller
 * allowedLateness (windows just close sooner), description changes.
 * Refused: a new metric or granularity (its windows would miss every event before the restored
 * offsets), a changed filter/key/value/distinct (existing aggregates were computed with the old
 * rule), a changed event mapping (the `event:` section: which records are events, their ids and
 * times, where fields are read), a larger allowedLateness (windows already closed and evicted
 * cannot reopen, so events the new rule accepts would land in empty windows).
 */
import { createHash } from 'node:crypto';
import { formatDuration } from '../config/durations.ts';
import { eventMappingOf, type MetricDefinition } from '../metrics/definitions.ts';
import type { EventMapping } from '../metrics/fieldSemantics.ts';
import { sessionRetentionMs } from '../metrics/sessionRule.ts';

/** How two event mappings differ, in words (`event.id is meta.eventId in A, $key in B`); empty when equal. */
export function mappingDifferences(a: EventMapping, b: EventMapping, aLabel: string, bLabel: string): string[] {
  const describe = (m: EventMapping) => (m.flat ? 'flat events (no event: section)' : 'an event: section');
  if (a.flat !== b.flat) return [`the event shape is ${describe(a)} in ${aLabel}, ${describe(b)} in ${bLabel}`];
  const out: string[] = [];
  for (const k of ['id', 'time', 'timeFormat', 'type'] as const) {
    const x = a[k] ?? '(none)';
    const y = b[k] ?? '(none)';
    if (x !== y) out.push(`event.${k} is ${x} in ${aLabel}, ${y} in ${bLabel}`);
  }
  return out;
}

export function semanticDefinition(def: MetricDefinition): Omit<MetricDefinition, 'description'> {
  const { description: _ignored, ...rest } = def;
  return rest;
}

export function metricsFingerprint(defs: readonly MetricDefinition[]): string {
  const canonical = [...defs].map(semanticDefinition).sort((a, b) => a.name.localeCompare(b.name));
  return createHash('sha256').update(JSON.stringify(canonical)).digest('hex').slice(0, 16);
}

export interface Compatibility {
  problems: string[];
  /** What changes but stays exact (logged). */
  notes: string[];
}

export function compareDefinitions(
  stateDefs: readonly MetricDefinition[],
  current: readonly MetricDefinition[],
  stateLabel: string,
): Compatibility {
  const problems: string[] = [];
  const notes: string[] = [];
  const mapping = mappingDifferences(eventMappingOf(stateDefs), eventMappingOf(current), `the ${stateLabel}`, 'the metric file');
  if (mapping.length > 0)
    problems.push(
      `the event mapping changed (${mapping.join('; ')}); the ${stateLabel} was computed with the old mapping; replay it into a new --version`,
    );
  const before = new Map(stateDefs.map((d) => [d.name, d]));
  for (const def of current) {
    const old = before.get(def.name);
    if (!old) {
      problems.push(
        `metric "${def.name}" is not in the ${stateLabel}: its windows would miss every event before the restored offsets; start a new --version to build it from the beginning of the topic`,
      );
      continue;
    }
    for (const field of ['filter', 'key', 'value', 'distinct', 'session'] as const) {
      const a = JSON.stringify(old[field] ?? null);
      const b = JSON.stringify(def[field] ?? null);
      if (a !== b)
        problems.push(
          `metric "${def.name}": ${field} changed from ${a} to ${b}; the ${stateLabel} was computed with the old ${field}; start a new --version`,
        );
    }
    for (const g of def.granularities) {
      if (!old.granularities.includes(g))
        problems.push(
          `metric "${def.name}": granularity ${g} is not in the ${stateLabel}: its windows would miss earlier events; start a new --version`,
        );
    }
    for (const g of old.granularities) {
      if (!def.granularities.includes(g)) notes.push(`metric "${def.name}": granularity ${g} removed, its state is dropped`);
    }
    // State written before retention existed has none to compare (its definitions carry no policy).
    if (old.retention !== undefined) {
      for (const g of def.granularities) {
        const [a, b] = [old.retention[g], def.retention?.[g]];
        if (a === undefined || b === undefined || a === b) continue;
        if (b > a)
          problems.push(
            `metric "${def.name}": ${g} retention grew from ${formatDuration(a)} to ${formatDuration(b)}; windows the ${stateLabel} already expired and deleted cannot come back; start a new --version`,
          );
        else
          notes.push(
            `metric "${def.name}": ${g} retention shrank from ${formatDuration(a)} to ${formatDuration(b)}; windows expire sooner`,
          );
      }
    }
    // Sessions are kept as the windows of their gap's size (sessionRule.ts): the same rule as a size's retention.
    if (old.retention !== undefined && old.session !== undefined && def.session !== undefined) {
      const [a, b] = [sessionRetentionMs(old), sessionRetentionMs(def)];
      if (b > a)
        problems.push(
          `metric "${def.name}": session retention grew from ${formatDuration(a)} to ${formatDuration(b)}; sessions the ${stateLabel} already expired and deleted cannot come back; start a new --version`,
        );
      else if (b < a)
        notes.push(
          `metric "${def.name}": session retention shrank from ${formatDuration(a)} to ${formatDuration(b)}; sessions expire sooner`,
        );
    }
    if (def.allowedLatenessMs > old.allowedLatenessMs) {
      problems.push(
        `metric "${def.name}": allowedLateness grew from ${formatDuration(old.allowedLatenessMs)} to ${formatDuration(def.allowedLatenessMs)}; windows the ${stateLabel} already closed cannot reopen; start a new --version`,
      );
    } else if (def.allowedLatenessMs < old.allowedLatenessMs) {
      notes.push(
        `metric "${def.name}": allowedLateness shrank from ${formatDuration(old.allowedLatenessMs)} to ${formatDuration(def.allowedLatenessMs)}; open windows close sooner`,
      );
    }
  }
  const names = new Set(current.map((d) => d.name));
  for (const old of stateDefs) if (!names.has(old.name)) notes.push(`metric "${old.name}" removed, its state is dropped`);
  return { problems, notes };
}

/**
 * How a metric file differs from a version's own (what is computed, not comments or
 * descriptions), in words: a version's definitions never change, so this only explains a refusal.
 */
export function metricDifferences(version: readonly MetricDefinition[], file: readonly MetricDefinition[]): string[] {
  const out: string[] = mappingDifferences(eventMappingOf(file), eventMappingOf(version), 'the file', 'the version');
  const theirs = new Map(version.map((d) => [d.name, d]));
  const names = new Set(file.map((d) => d.name));
  for (const def of file) {
    const old = theirs.get(def.name);
    if (!old) {
      out.push(`metric "${def.name}" is in the file, not in the version`);
      continue;
    }
    for (const field of ['filter', 'key', 'value', 'distinct', 'session'] as const) {
      const a = JSON.stringify(def[field] ?? null);
      const b = JSON.stringify(old[field] ?? null);
      if (a !== b) out.push(`metric "${def.name}": ${field} is ${a} in the file, ${b} in the version`);
    }
    if (def.granularities.join() !== old.granularities.join())
      out.push(
        `metric "${def.name}": granularities [${def.granularities.join(', ')}] in the file, [${old.granularities.join(', ')}] in the version`,
      );
    for (const g of def.granularities) {
      const [a, b] = [def.retention?.[g], old.retention?.[g]];
      if (a !== undefined && b !== undefined && a !== b)
        out.push(`metric "${def.name}": ${g} retention ${formatDuration(a)} in the file, ${formatDuration(b)} in the version`);
    }
    if (def.allowedLatenessMs !== old.allowedLatenessMs)
      out.push(
        `metric "${def.name}": allowedLateness ${formatDuration(def.allowedLatenessMs)} in the file, ${formatDuration(old.allowedLatenessMs)} in the version`,
      );
  }
  for (const old of version) if (!names.has(old.name)) out.push(`metric "${old.name}" is in the version, not in the file`);
  return out;
}

export function compareSemantics(state: { outOfOrdernessMs: number }, current: { outOfOrdernessMs: number }, stateLabel: string): string[] {
  // A larger out-of-orderness moves the watermark back: windows the state already closed would be open again.
  if (current.outOfOrdernessMs > state.outOfOrdernessMs) {
    return [
      `--out-of-orderness grew from ${formatDuration(state.outOfOrdernessMs)} to ${formatDuration(current.outOfOrdernessMs)}; windows the ${stateLabel} already closed cannot reopen; start a new --version`,
    ];
  }
  return [];
}
