/**
 * Step 1 as a client sends it, finished as soon as it has an effect. The daemon always drops the
 * knock, so curl itself never learns the outcome and would wait out its whole timeout (about 1 s
 * on the host, several in the VM); a test instead waits for the daemon's `granted` log line for
 * the step-2 window (written after the kernel took the grant), then stops curl. A knock that
 * grants nothing still waits the full timeout: that silence is what the caller checks.
 */
import type { Daemon } from './sandbox.js';
import type { Netns } from './netns.js';

export interface Step1Knock {
  client: Netns;
  daemon: Daemon;
  /** The step-1 URL, e.g. `http://192.0.2.1/knock`. */
  url: string;
  /** The request body (`app=...&access_key=...`). */
  body: string;
  /** The client's source address (curl --interface); without it, any new step-2 grant counts. */
  from?: string;
  /** curl's timeout: the longest the knock may take (scaled by the caller in the VM). */
  timeoutSeconds: number;
  /** More curl arguments (headers, --tcp-fastopen, ...). */
  curlArgs?: string[];
}

interface LogLine {
  msg?: string;
  step?: string;
  ip?: string;
}

function parsed(line: string): LogLine | undefined {
  try {
    return JSON.parse(line) as LogLine;
  } catch {
    return undefined;
  }
}

/** True once the daemon logged a step-2 window for `ip` (any address when undefined) after line `from`. */
export function step2WindowLogged(daemon: Daemon, ip: string | undefined, fromLine = 0): boolean {
  return daemon.output.slice(fromLine).some((text) => {
    const line = parsed(text);
    return line?.msg === 'granted' && line.step === 'step2' && (ip === undefined || line.ip === ip);
  });
}

/**
 * Sends step 1 with curl and resolves true as soon as the daemon opened the step-2 window for
 * the source, false when curl's timeout passes without one.
 */
export function knockStep1(knock: Step1Knock): Promise<boolean> {
  const { client, daemon, from } = knock;
  const firstLine = daemon.output.length;
  const args = ['-sS', '-o', '/dev/null', '-m', String(knock.timeoutSeconds), ...(from ? ['--interface', from] : []), ...(knock.curlArgs ?? [])];
  const curl = client.spawn('curl', [...args, '-d', knock.body, knock.url]);
  return new Promise((resolve) => {
    const finish = (granted: boolean) => {
      clearInterval(poll);
      if (curl.exitCode === null) curl.kill('SIGKILL');
      resolve(granted);
    };
    const poll = setInterval(() => {
      if (step2WindowLogged(daemon, from, firstLine)) finish(true);
    }, 20);
    curl.once('exit', () => finish(step2WindowLogged(daemon, from, firstLine)));
  });
}
