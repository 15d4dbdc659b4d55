/**
 * SQL text for DuckDB: string literals are quoted here and nowhere else, so that no value (a
 * metric name, a filter value, a key, a file path) can end a literal early.
 */

/**
 * A DuckDB string literal: single quotes doubled. A NUL character cannot appear inside a literal
 * (DuckDB's parser stops at it), so it is spliced in with chr(0).
 */
export function sqlQuote(text: string): string {
  const quoted = `'${text.replace(/'/g, "''")}'`;
  return text.includes('\u0000') ? `(${quoted.split('\u0000').join("' || chr(0) || '")})` : quoted;
}
