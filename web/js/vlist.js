// A virtualised list of variable-height rows: only the rows in (and near) the viewport exist in
// the DOM, so a transcript of any length costs the same to open and to scroll. Heights start
// as estimates and are replaced by measurements; the first visible row stays put while rows
// above it change height (scroll anchoring), and a list scrolled to the end follows new rows.

export class VirtualList {
  /**
   * @param {HTMLElement} scroller  the element with `overflow-y: auto`
   * @param {object} o
   * @param {number} o.count
   * @param {(i: number) => Element} o.render  builds row i
   * @param {(i: number) => number} [o.estimate]
   * @param {(first: number, last: number) => void} [o.onRange]  visible range changed
   * @param {number} [o.overscan]
   */
  constructor(scroller, o) {
    this.scroller = scroller;
    this.o = o;
    this.overscan = o.overscan ?? 8;
    this.count = 0;
    this.heights = new Float64Array(0);
    this.measured = new Uint8Array(0);
    this.offsets = new Float64Array(1);
    this.dirtyFrom = 0;
    this.rows = new Map(); // index -> element
    this.stale = new Set(); // indices whose element must be rebuilt
    this.follow = true; // stick to the end
    this.range = [0, -1];
    this.spacer = document.createElement('div');
    this.spacer.className = 'vlist-spacer';
    scroller.append(this.spacer);
    this.queued = false;
    this.setTop = -1; // the scrollTop this list last set itself
    this.onScroll = () => {
      // Our own scrollTop writes are not the reader scrolling: they must not end following.
      if (Math.abs(this.scroller.scrollTop - this.setTop) >= 2) {
        const atEnd = this.atEnd();
        if (atEnd !== this.follow) {
          this.follow = atEnd;
          this.o.onFollow?.(atEnd);
        }
      }
      this.schedule();
    };
    scroller.addEventListener('scroll', this.onScroll, { passive: true });
    this.resizeObserver = new ResizeObserver(() => this.schedule());
    this.resizeObserver.observe(scroller);
    this.setCount(o.count);
  }

  destroy() {
    this.scroller.removeEventListener('scroll', this.onScroll);
    this.resizeObserver.disconnect();
    this.spacer.remove();
    this.rows.clear();
  }

  estimate(i) {
    return this.o.estimate ? this.o.estimate(i) : 56;
  }

  setCount(n) {
    if (n === this.count) return;
    const old = this.count;
    if (n > this.heights.length) {
      const cap = Math.max(n, Math.ceil(this.heights.length * 1.5), 64);
      const hs = new Float64Array(cap);
      hs.set(this.heights);
      const ms = new Uint8Array(cap);
      ms.set(this.measured);
      this.heights = hs;
      this.measured = ms;
      this.offsets = new Float64Array(cap + 1);
      this.dirtyFrom = 0;
    }
    for (let i = old; i < n; i++) {
      this.heights[i] = this.estimate(i);
      this.measured[i] = 0;
    }
    this.count = n;
    this.dirtyFrom = Math.min(this.dirtyFrom, old);
    this.schedule();
  }

  /** Row i changed: rebuild it on the next frame (a no-op when it is not rendered). */
  invalidate(i) {
    if (this.rows.has(i)) {
      this.stale.add(i);
      this.schedule();
    }
  }

  /** Rebuild every rendered row. */
  invalidateAll() {
    for (const i of this.rows.keys()) this.stale.add(i);
    this.schedule();
  }

  layout() {
    if (this.dirtyFrom > this.count) return;
    const off = this.offsets;
    for (let i = this.dirtyFrom; i < this.count; i++) off[i + 1] = off[i] + this.heights[i];
    this.dirtyFrom = this.count + 1;
  }

  total() {
    this.layout();
    return this.offsets[this.count];
  }

  /** Index of the row containing y. */
  indexAt(y) {
    this.layout();
    let lo = 0;
    let hi = this.count - 1;
    const off = this.offsets;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (off[mid] <= y) lo = mid;
      else hi = mid - 1;
    }
    return Math.max(0, lo);
  }

  scrollTo(top) {
    const s = this.scroller;
    s.scrollTop = top;
    this.setTop = s.scrollTop;
  }

  atEnd() {
    const s = this.scroller;
    return s.scrollTop + s.clientHeight >= s.scrollHeight - 8;
  }

  scrollToEnd() {
    this.follow = true;
    // Scroll now, so that a scroll event still queued from before reads as ours.
    this.scrollTo(Math.max(0, this.total() - this.scroller.clientHeight));
    this.o.onFollow?.(true);
    this.schedule();
  }

  scrollToIndex(i) {
    this.follow = false;
    this.layout();
    this.scrollTo(this.offsets[Math.max(0, Math.min(i, this.count - 1))] || 0);
    this.o.onFollow?.(false);
    this.schedule();
  }

  schedule() {
    if (this.queued) return;
    this.queued = true;
    requestAnimationFrame(() => {
      this.queued = false;
      this.render();
    });
  }

  /** Render synchronously (also used by the first paint). */
  render() {
    for (let pass = 0; pass < 4; pass++) {
      if (!this.renderPass()) break;
    }
  }

  /** One pass: place rows, measure them; true when a height changed (another pass needed). */
  renderPass() {
    const s = this.scroller;
    const total = this.total();
    this.spacer.style.height = `${total}px`;
    if (this.follow) this.scrollTo(Math.max(0, total - s.clientHeight));
    const top = s.scrollTop;
    const bottom = top + s.clientHeight;
    if (this.count === 0) {
      for (const el of this.rows.values()) el.remove();
      this.rows.clear();
      return false;
    }
    const first = Math.max(0, this.indexAt(top) - this.overscan);
    const last = Math.min(this.count - 1, this.indexAt(bottom) + this.overscan);
    const anchor = this.indexAt(top);
    const anchorDelta = top - this.offsets[anchor];

    for (const [i, el] of this.rows) {
      if (i < first || i > last) {
        el.remove();
        this.rows.delete(i);
        this.stale.delete(i);
      }
    }
    const fresh = [];
    for (let i = first; i <= last; i++) {
      let el = this.rows.get(i);
      if (!el || this.stale.has(i)) {
        const next = this.o.render(i);
        next.classList.add('vrow');
        if (el) el.replaceWith(next);
        else this.spacer.append(next);
        el = next;
        this.rows.set(i, el);
        this.stale.delete(i);
        fresh.push(i);
      }
      const y = `translateY(${this.offsets[i]}px)`;
      if (el.style.transform !== y) el.style.transform = y;
    }
    // Measure (one layout for all rows).
    let changed = false;
    let minChanged = this.count;
    for (let i = first; i <= last; i++) {
      const el = this.rows.get(i);
      const hgt = el.offsetHeight;
      if (hgt > 0 && hgt !== this.heights[i]) {
        this.heights[i] = hgt;
        this.measured[i] = 1;
        changed = true;
        if (i < minChanged) minChanged = i;
      } else if (hgt > 0) {
        this.measured[i] = 1;
      }
    }
    if (changed) {
      this.dirtyFrom = Math.min(this.dirtyFrom, minChanged);
      this.layout();
      this.spacer.style.height = `${this.offsets[this.count]}px`;
      if (this.follow) {
        this.scrollTo(Math.max(0, this.offsets[this.count] - s.clientHeight));
      } else {
        // Keep the first visible row where the reader sees it.
        const want = this.offsets[anchor] + anchorDelta;
        if (Math.abs(s.scrollTop - want) > 0.5) this.scrollTo(want);
      }
      for (const [i, el] of this.rows) el.style.transform = `translateY(${this.offsets[i]}px)`;
    }
    if (first !== this.range[0] || last !== this.range[1]) {
      this.range = [first, last];
      this.o.onRange?.(first, last);
    }
    return changed;
  }
}
