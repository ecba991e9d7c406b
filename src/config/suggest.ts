/** Edit distance (insertions, deletions, substitutions), for "did you mean" hints. */
export function levenshtein(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + cost);
    }
    previous = current;
  }
  return previous[b.length]!;
}

/** The candidate closest to `word`, if close enough to be a plausible typo. */
export function closestMatch(word: string, candidates: readonly string[]): string | undefined {
  const normalized = word.toLowerCase().replace(/-/g, '_');
  let best: { candidate: string; distance: number } | undefined;
  for (const candidate of candidates) {
    const distance = levenshtein(normalized, candidate);
    if (!best || distance < best.distance) best = { candidate, distance };
  }
  const tolerance = Math.max(2, Math.floor(word.length / 3));
  return best && best.distance <= tolerance ? best.candidate : undefined;
}

/** "unknown key; did you mean 'x'?" or the list of keys allowed there. */
export function unknownKeyMessage(key: string, known: readonly string[]): string {
  const suggestion = closestMatch(key, known);
  return suggestion ? `unknown key '${key}'; did you mean '${suggestion}'?` : `unknown key '${key}'; allowed here: ${known.join(', ')}`;
}
