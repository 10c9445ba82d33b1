// Runs once before all test files: placeholder until the dev token is wired in.
export default function setup(): void {}
