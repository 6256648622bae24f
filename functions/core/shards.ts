/** FNV-1a (32 bits) over the UTF-16 code units of `text`: stable across processes and releases. */
function fnv1a(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}

/** Which of `count` shards `key` falls in: spreads one workspace's kind of item over partitions, the same way every time. */
export function shardOf(key: string, count: number): number {
  return fnv1a(key) % count;
}
