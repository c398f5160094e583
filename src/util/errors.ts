/**
 * Errors the CLI prints as one line and turns into a non-zero exit.
 * A UserError is the user's to fix (bad YAML, missing image, bad flag); anything else is a bug.
 */
export class UserError extends Error {
  override name = 'UserError';
}

/** A position in a source file, 1-based, as editors and compilers print it. */
export interface SourcePos {
  file: string;
  line: number;
  col: number;
}

/** One problem found in an input file, printed as `FILE:LINE:COL: message`. */
export interface Problem extends SourcePos {
  message: string;
}

export function formatProblem(p: Problem): string {
  return `${p.file}:${p.line}:${p.col}: ${p.message}`;
}

/** Every problem found in one validation pass, so the user can fix them all at once. */
export class SourceError extends UserError {
  override name = 'SourceError';
  constructor(readonly problems: Problem[]) {
    super(problems.map(formatProblem).join('\n'));
  }
}
