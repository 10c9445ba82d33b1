// Types for the parts of build/mingw.mjs the tests use.
export function peImports(file: string): string[];
export function hasMingw(): boolean;
