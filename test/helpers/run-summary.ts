/**
 * A vitest reporter (next to the default one) that ends every run with the number of tests run
 * per project, and in CI (KNOCKPORT_CI=1) fails the run when a kernel test was skipped: CI runs
 * as root with every package installed, so a skipped kernel test there is a gap, never a pass.
 * Tests the host kernel cannot run are not registered on the host at all (they belong to the VM
 * tier, see test/helpers/vm.ts), so they never show up here as skipped.
 */
import type { Reporter, TestModule } from 'vitest/node';

const IN_CI = process.env.KNOCKPORT_CI === '1';

interface Tally {
  passed: number;
  failed: number;
  skipped: number;
}

export default class RunSummary implements Reporter {
  /** Per group, when its first file started and its last one ended: the groups run one after another. */
  private readonly spans = new Map<string, { start: number; end: number }>();

  onTestModuleStart(module: TestModule): void {
    const project = module.project.name || 'default';
    if (!this.spans.has(project)) this.spans.set(project, { start: Date.now(), end: Date.now() });
  }

  onTestModuleEnd(module: TestModule): void {
    const span = this.spans.get(module.project.name || 'default');
    if (span) span.end = Date.now();
  }

  private took(project: string): string {
    const span = this.spans.get(project);
    return span ? ` in ${((span.end - span.start) / 60_000).toFixed(1)} min` : '';
  }

  onTestRunEnd(testModules: ReadonlyArray<TestModule>): void {
    const tallies = new Map<string, Tally>();
    const skippedKernelTests: string[] = [];
    for (const module of testModules) {
      const project = module.project.name || 'default';
      const tally = tallies.get(project) ?? { passed: 0, failed: 0, skipped: 0 };
      tallies.set(project, tally);
      for (const test of module.children.allTests()) {
        const state = test.result().state;
        if (state === 'passed') tally.passed++;
        else if (state === 'failed') tally.failed++;
        else {
          tally.skipped++;
          if (project.startsWith('kernel')) skippedKernelTests.push(`${module.moduleId.replace(`${process.cwd()}/`, '')} > ${test.fullName}`);
        }
      }
    }
    const lines = [...tallies].map(([project, t]) => `  ${project}: ${t.passed} passed, ${t.failed} failed, ${t.skipped} skipped${this.took(project)}`);
    const total = [...tallies.values()].reduce((sum, t) => sum + t.passed + t.failed, 0);
    console.log(`\nTests run: ${total}\n${lines.join('\n')}`);
    if (IN_CI && skippedKernelTests.length > 0) {
      console.log(`\nCI must run every kernel test, but these ${skippedKernelTests.length} were skipped:\n  ${skippedKernelTests.join('\n  ')}`);
      process.exitCode = 1;
    }
  }
}
