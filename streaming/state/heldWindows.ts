/**
 * The closed windows of one slot whose rows are still in the view topic: kept by key only (their
 * aggregates are final and published) until they expire (services/metrics/retention.ts), when
 * the speed layer deletes their rows with tombstones.
 *
 * A queue ordered by window start: within a slot, windows close in the order of their starts
 * (a window is created only while open, so it starts after every window closed before it), so
 * the oldest held window is always the next to expire. The cost is one array of keys per window
 * start, not a table row per window.
 */
export class HeldWindows {
  private starts: number[] = [];
  private keys: string[][] = [];
  /** Index of the oldest held window (entries before it are expired and forgotten). */
  private head = 0;
  /** Keys held over all windows. */
  size = 0;

  /** Holds closed window `start` with its keys (closing order; an older start is inserted in place). */
  push(start: number, keys: string[]): void {
    let i = this.starts.length;
    while (i > this.head && this.starts[i - 1]! > start) i--;
    if (i > this.head && this.starts[i - 1] === start) this.keys[i - 1]!.push(...keys);
    else {
      this.starts.splice(i, 0, start);
      this.keys.splice(i, 0, keys);
    }
    this.size += keys.length;
  }

  /** Start of the oldest held window, or undefined. */
  oldest(): number | undefined {
    return this.head < this.starts.length ? this.starts[this.head] : undefined;
  }

  /** Removes the oldest held window and returns its start and keys. */
  shift(): { start: number; keys: string[] } {
    const start = this.starts[this.head]!;
    const keys = this.keys[this.head]!;
    this.head++;
    this.size -= keys.length;
    // Drop the consumed prefix now and then (amortized O(1) per window).
    if (this.head > 1024 && this.head * 2 > this.starts.length) {
      this.starts = this.starts.slice(this.head);
      this.keys = this.keys.slice(this.head);
      this.head = 0;
    }
    return { start, keys };
  }

  /** Every held window, oldest first. */
  *entries(): Generator<{ start: number; keys: readonly string[] }> {
    for (let i = this.head; i < this.starts.length; i++) yield { start: this.starts[i]!, keys: this.keys[i]! };
  }

  /** Held window starts (for the state's byte estimate). */
  get windows(): number {
    return this.starts.length - this.head;
  }
}
