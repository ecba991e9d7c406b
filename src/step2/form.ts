/** The step-2 request fields, as sent by `curl -d 'app=..&access_key=..[&token=..]'` or as JSON. */
export interface Step2Fields {
  app: string;
  accessKey: string;
  /** TOTP code; absent (or empty) when the client sent none. */
  token?: string;
}

export type FormResult = { ok: true; fields: Step2Fields } | { ok: false; reason: string };

/** Generous for any real name, key or code; anything longer is not a well-formed request. */
const MAX_LENGTH = { app: 64, access_key: 256, token: 16 } as const;
type FieldName = keyof typeof MAX_LENGTH;
const FIELD_NAMES = Object.keys(MAX_LENGTH) as FieldName[];

/** Pure: body bytes and Content-Type in, fields or the reason they are malformed out. */
export function parseStep2Body(body: Buffer, contentType: string | undefined): FormResult {
  const mediaType = (contentType ?? '').split(';')[0]!.trim().toLowerCase();
  const text = decodeUtf8(body);
  if (text === undefined) return { ok: false, reason: 'body is not UTF-8' };
  if (mediaType === 'application/json') return fromJson(text);
  if (mediaType === '' || mediaType === 'application/x-www-form-urlencoded') return fromUrlencoded(text);
  return { ok: false, reason: 'unsupported content type' };
}

function decodeUtf8(body: Buffer): string | undefined {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(body);
  } catch {
    return undefined;
  }
}

function fromUrlencoded(text: string): FormResult {
  const params = new URLSearchParams(text);
  const values: Partial<Record<FieldName, string>> = {};
  for (const name of FIELD_NAMES) {
    const all = params.getAll(name);
    if (all.length > 1) return { ok: false, reason: `field ${name} given more than once` };
    if (all[0] !== undefined) values[name] = all[0];
  }
  return validate(values);
}

function fromJson(text: string): FormResult {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return { ok: false, reason: 'body is not JSON' };
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) return { ok: false, reason: 'JSON body is not an object' };
  const values: Partial<Record<FieldName, string>> = {};
  for (const name of FIELD_NAMES) {
    const value = (json as Record<string, unknown>)[name];
    if (value === undefined) continue;
    if (typeof value !== 'string') return { ok: false, reason: `field ${name} is not a string` };
    values[name] = value;
  }
  return validate(values);
}

function validate(values: Partial<Record<FieldName, string>>): FormResult {
  for (const name of FIELD_NAMES) {
    if ((values[name]?.length ?? 0) > MAX_LENGTH[name]) return { ok: false, reason: `field ${name} too long` };
  }
  if (!values.app) return { ok: false, reason: 'field app missing' };
  if (!values.access_key) return { ok: false, reason: 'field access_key missing' };
  const fields: Step2Fields = { app: values.app, accessKey: values.access_key };
  if (values.token) fields.token = values.token;
  return { ok: true, fields };
}
