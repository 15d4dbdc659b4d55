/**
 * When a window is closed: one rule for the speed layer, which stops updating a closed window and
 * drops its late events (streaming/state/partitionState.ts), and for serving's reconciliation,
 * which compares only closed windows because only their speed rows are final
 * (serving/reconciliation.ts).
 *
 * Window [start, start + size) with allowed lateness L closes when the watermark passes
 * start + size + L: `watermark > start + size + L`. At exactly start + size + L it is still open:
 * the speed layer still applies an event of it (a record is judged by the watermark before it),
 * so its row is not final yet. `windowRules.spec.ts` and `windowClosing.spec.ts` hold both
 * layers to the boundary.
 */

/** The watermark past which window [start, start + sizeMs) with allowed lateness `latenessMs` is closed. */
export function windowClosesAt(start: number, sizeMs: number, latenessMs: number): number {
  return start + sizeMs + latenessMs;
}

/** Whether a window that closes at `closesAt` (windowClosesAt) is closed under `watermark`. */
export function isWindowClosed(closesAt: number, watermark: number): boolean {
  return watermark > closesAt;
}
