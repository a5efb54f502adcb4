/**
 * A binary min-heap of items keyed by (time, order of scheduling): the discrete-event loop's
 * agenda. Items scheduled for the same instant come out in the order they were pushed, which keeps
 * runs deterministic. Keys live in typed arrays beside the items, so sifting compares numbers in
 * contiguous memory instead of chasing item objects (most of a large run's heap work).
 */
export class EventQueue<T> {
  private times = new Float64Array(1024);
  private seqs = new Float64Array(1024);
  private items: (T | undefined)[] = new Array<T | undefined>(1024).fill(undefined);
  private count = 0;
  private nextSeq = 0;

  get size(): number {
    return this.count;
  }

  push(time: number, item: T): void {
    if (this.count === this.times.length) this.grow();
    const times = this.times;
    const seqs = this.seqs;
    const items = this.items;
    const seq = this.nextSeq++;
    let at = this.count++;
    while (at > 0) {
      const parent = (at - 1) >> 1;
      const pt = times[parent] as number;
      if (pt < time || (pt === time && (seqs[parent] as number) < seq)) break;
      times[at] = pt;
      seqs[at] = seqs[parent] as number;
      items[at] = items[parent];
      at = parent;
    }
    times[at] = time;
    seqs[at] = seq;
    items[at] = item;
  }

  /** Removes and returns the earliest item (undefined when empty). */
  pop(): T | undefined {
    if (this.count === 0) return undefined;
    const times = this.times;
    const seqs = this.seqs;
    const items = this.items;
    const top = items[0];
    const n = --this.count;
    const time = times[n] as number;
    const seq = seqs[n] as number;
    const item = items[n];
    items[n] = undefined;
    let at = 0;
    for (;;) {
      let child = 2 * at + 1;
      if (child >= n) break;
      const right = child + 1;
      if (right < n) {
        const lt = times[child] as number;
        const rt = times[right] as number;
        if (rt < lt || (rt === lt && (seqs[right] as number) < (seqs[child] as number))) child = right;
      }
      const ct = times[child] as number;
      if (time < ct || (time === ct && seq < (seqs[child] as number))) break;
      times[at] = ct;
      seqs[at] = seqs[child] as number;
      items[at] = items[child];
      at = child;
    }
    if (n > 0) {
      times[at] = time;
      seqs[at] = seq;
      items[at] = item;
    }
    return top;
  }

  private grow(): void {
    const size = this.times.length * 2;
    const times = new Float64Array(size);
    times.set(this.times);
    const seqs = new Float64Array(size);
    seqs.set(this.seqs);
    this.times = times;
    this.seqs = seqs;
    this.items.length = size;
    this.items.fill(undefined, this.count);
  }
}
