/**
 * The gateway endpoints of steps 1 and 2, from `--url` and/or `--host` with ports and paths;
 * refuses paths that could break the step-1 request line.
 */
import { isIP } from 'node:net';
import { KnockUsageError } from './errors.js';

/** One step's endpoint: where the client connects and which path it posts to. */
export interface Endpoint {
  /** Host name or IP address, without IPv6 brackets. */
  host: string;
  port: number;
  path: string;
}

export interface KnockTarget {
  step1: Endpoint;
  step2: Endpoint;
}

export interface TargetOptions {
  /** Full URLs as in the curl commands: an http:// one for step 1, an https:// one for step 2. */
  urls?: string[];
  host?: string;
  step1Port?: number;
  step2Port?: number;
  step1Path?: string;
  step2Path?: string;
}

const DEFAULT_PORTS = { 'http:': 80, 'https:': 443 } as const;

// RFC 3986 path characters: anything else could break the request line, so refuse it.
const PATH_PATTERN = /^\/[A-Za-z0-9\-._~!$&'()*+,;=:@%/]*$/;

/**
 * Where steps 1 and 2 go, from `--url` (http:// for step 1, https:// for step 2) and/or
 * `--host` with ports and paths. A step given by URL takes nothing from the other flags.
 */
export function resolveTarget(options: TargetOptions): KnockTarget {
  const byScheme = urlsByScheme(options.urls ?? []);
  const step1 = byScheme['http:'];
  const step2 = byScheme['https:'];
  if (step1 && (options.step1Port !== undefined || options.step1Path !== undefined)) {
    throw new KnockUsageError('give step 1 either as an http:// --url or with --http-port/--http-path, not both');
  }
  if (step2 && (options.step2Port !== undefined || options.step2Path !== undefined)) {
    throw new KnockUsageError('give step 2 either as an https:// --url or with --https-port/--https-path, not both');
  }
  const flagHost = options.host === undefined ? undefined : parseHost(options.host);
  const fallbackHost = flagHost ?? step1?.host ?? step2?.host;
  if (fallbackHost === undefined) throw new KnockUsageError('no gateway given: use --url URL or --host HOST');
  return {
    step1: step1 ?? { host: fallbackHost, port: options.step1Port ?? DEFAULT_PORTS['http:'], path: requirePath(options.step1Path, 'step-1', '--http-path') },
    step2: step2 ?? { host: fallbackHost, port: options.step2Port ?? DEFAULT_PORTS['https:'], path: requirePath(options.step2Path, 'step-2', '--https-path') },
  };
}

/** The `Host` header value: IPv6 in brackets, port only when not the scheme's default. */
export function hostHeader(endpoint: Endpoint, defaultPort: number): string {
  const host = isIP(endpoint.host) === 6 ? `[${endpoint.host}]` : endpoint.host;
  return endpoint.port === defaultPort ? host : `${host}:${endpoint.port}`;
}

/** `http://host[:port]/path` for messages (no credentials ever appear in it). */
export function describeEndpoint(scheme: 'http' | 'https', endpoint: Endpoint): string {
  return `${scheme}://${hostHeader(endpoint, DEFAULT_PORTS[`${scheme}:`])}${endpoint.path}`;
}

function urlsByScheme(urls: readonly string[]): Partial<Record<'http:' | 'https:', Endpoint>> {
  const result: Partial<Record<'http:' | 'https:', Endpoint>> = {};
  for (const text of urls) {
    const { scheme, endpoint } = parseUrl(text);
    if (result[scheme]) throw new KnockUsageError(`two ${scheme}// URLs given; give one http:// URL (step 1) and one https:// URL (step 2)`);
    result[scheme] = endpoint;
  }
  return result;
}

function parseUrl(text: string): { scheme: 'http:' | 'https:'; endpoint: Endpoint } {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new KnockUsageError(`--url ${text}: not a URL (expected http://host[:port]/step-1-path or https://host[:port]/step-2-path)`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new KnockUsageError(`--url ${text}: use http:// for step 1 or https:// for step 2`);
  }
  if (url.username || url.password || url.search || url.hash) {
    throw new KnockUsageError(`--url ${text}: only scheme, host, port and path are allowed (keys go in --http-key/--https-key)`);
  }
  const step = url.protocol === 'http:' ? 'step-1' : 'step-2';
  return {
    scheme: url.protocol,
    endpoint: {
      host: stripBrackets(url.hostname),
      port: url.port === '' ? DEFAULT_PORTS[url.protocol] : Number(url.port),
      path: requirePath(url.pathname === '/' ? undefined : url.pathname, step, `the ${url.protocol}// URL`),
    },
  };
}

function parseHost(text: string): string {
  const host = stripBrackets(text.trim());
  if (host === '') throw new KnockUsageError('--host is empty');
  if (isIP(host) === 0 && !/^[A-Za-z0-9.-]+$/.test(host)) {
    throw new KnockUsageError(`--host ${text}: expected a host name or an IP address (ports go in --http-port/--https-port)`);
  }
  return host;
}

function requirePath(path: string | undefined, step: string, where: string): string {
  if (path === undefined || path === '') throw new KnockUsageError(`no ${step} path: give it in ${where}`);
  if (!PATH_PATTERN.test(path)) throw new KnockUsageError(`${step} path ${JSON.stringify(path)} must start with / and contain only URL path characters`);
  return path;
}

function stripBrackets(host: string): string {
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
}
