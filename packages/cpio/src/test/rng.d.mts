export function rng32(seed: number): () => number;
export function rng(seed: number): () => number;
