/** A bench part that fails is recorded as such (in the results and the log); the other parts still run. */
export async function recordedPhase(name, run, log) {
  try {
    return await run();
  } catch (err) {
    log(`  ${name} failed: ${err.stack ?? err}`);
    return {
      error: String(err?.message ?? err)
        .replace(/\s+/g, ' ')
        .slice(0, 300),
    };
  }
}
