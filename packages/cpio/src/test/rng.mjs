// mulberry32: a small seeded PRNG, so generated trees are reproducible from their seed.
// Plain JS so the bench and the cross-Node script (run outside vitest) share it with the tests.

/** A generator of uint32 values. */
export function rng32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/** A generator of numbers in [0, 1). */
export function rng(seed) {
  const next = rng32(seed);
  return () => next() / 4294967296;
}
