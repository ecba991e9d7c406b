/** Multi-line tool output in one log line. */

/**
 * Collapses tool output (nft's error with its caret diagram) to one line for a log field or
 * message: lines of only carets and tildes are dropped, the rest joined with " | ".
 */
export function oneLine(text: string): string {
  return text
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !/^[\^~\s]+$/.test(line))
    .join(' | ');
}
