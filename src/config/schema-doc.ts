/**
 * The config reference read from the schema itself: every key of every section with its type,
 * default, description and example, so that the man page knock-port.yaml(5) and the markdown
 * reference (docs/manual/configuration.md) cannot drift from what the loader accepts. A key is
 * documented by `.meta()` on its schema (see KeyDoc); the type and the default come from the
 * schema when the meta does not say them.
 */
import { z } from 'zod';
import { appSchema, clusterSchema, globalSchema, redisSchema, redisTlsSchema, userSchema } from './schema.js';

/** What a key's `.meta()` holds; `description` and `example` are required of every key (a test checks). */
export interface KeyDoc {
  /** What the key does, in the reference's inline markdown (`code`, **bold**, [links](page.md)). */
  description: string;
  /** A YAML value, as written after `key: `. */
  example?: string;
  /** The type in words, when the schema's own (a string, an integer from 1 to 65535) says too little. */
  type?: string;
  /** The default in the reference's inline markdown, when it is not a plain value (`` `interface_ext` ``, disabled). */
  default?: string;
}

/** One key as the reference shows it. */
export interface KeyReference {
  key: string;
  type: string;
  /** `required`, `none`, or the default in inline markdown (a value in backticks). */
  default: string;
  description: string;
  example: string | undefined;
}

/** One section of the file: where it sits, and its keys. */
export interface SectionReference {
  /** `global`, `global.cluster`, `APP`, `APP.users[]`, .... */
  path: string;
  /** A one-line summary of the section. */
  summary: string;
  keys: KeyReference[];
}

type Schema = z.core.$ZodType;
type Shape = Record<string, Schema>;

/** The sections, in the order the reference lists them. */
const SECTIONS: { path: string; summary: string; shape: Shape }[] = [
  { path: 'global', summary: 'Settings of the gateway as a whole.', shape: globalSchema.shape },
  { path: 'global.cluster', summary: 'Several gateways sharing one set of grants through a Redis or Valkey store.', shape: clusterSchema.shape },
  { path: 'global.cluster.redis', summary: 'The store: one server (url) or Sentinels.', shape: redisSchema.shape },
  { path: 'global.cluster.redis.tls', summary: 'TLS files for the store, PEM.', shape: redisTlsSchema.shape },
  { path: 'APP', summary: 'One protected service; the section name is the app clients send (1-32 of A-Z a-z 0-9 _ -).', shape: appSchema.shape },
  { path: 'APP.users[]', summary: 'A named user of an app.', shape: userSchema.shape },
];

/** Keys whose value is a section of its own, documented under that section. */
const NESTED_SECTIONS: ReadonlySet<string> = new Set(['global.cluster', 'global.cluster.redis', 'global.cluster.redis.tls']);

export function configReference(): SectionReference[] {
  return SECTIONS.map(({ path, summary, shape }) => ({
    path,
    summary,
    keys: Object.entries(shape).map(([key, schema]) => keyReference(key, schema, NESTED_SECTIONS.has(`${path}.${key}`))),
  }));
}

function keyReference(key: string, schema: Schema, nested: boolean): KeyReference {
  const layers = unwrap(schema);
  const doc = metaOf(layers);
  const inner = layers[layers.length - 1]!;
  return {
    key,
    type: doc.type ?? (nested ? 'mapping (a section of its own, below)' : typeName(inner)),
    default: doc.default ?? defaultOf(layers),
    description: doc.description ?? '',
    example: doc.example,
  };
}

/** The wrappers of a key's schema, outermost first, down to the schema of its value. */
function unwrap(schema: Schema): Schema[] {
  const layers = [schema];
  let current = schema;
  for (let depth = 0; depth < 10; depth++) {
    const def = current._zod.def as { type: string; innerType?: Schema; in?: Schema; out?: Schema };
    const next = def.innerType ?? (def.type === 'pipe' ? pickPipeSide(def.in!, def.out!) : undefined);
    if (next === undefined) break;
    layers.push(next);
    current = next;
  }
  return layers;
}

/** A preprocess is a transform piped into the real schema; a parsed string is a string piped into a transform. */
function pickPipeSide(input: Schema, output: Schema): Schema {
  return input._zod.def.type === 'transform' ? output : input;
}

/** The meta of every layer, the outer ones winning. */
function metaOf(layers: Schema[]): Partial<KeyDoc> {
  const merged: Partial<KeyDoc> = {};
  for (const layer of [...layers].reverse()) Object.assign(merged, z.globalRegistry.get(layer) ?? {});
  return merged;
}

function defaultOf(layers: Schema[]): string {
  for (const layer of layers) {
    const def = layer._zod.def as { type: string; defaultValue?: unknown };
    if (def.type === 'default' || def.type === 'prefault') return `\`${yamlText(def.defaultValue)}\``;
    if (def.type === 'optional') return 'none';
  }
  return 'required';
}

function yamlText(value: unknown): string {
  if (typeof value === 'string') return value;
  return JSON.stringify(value);
}

const SAFE = Number.MAX_SAFE_INTEGER;

/** The type in words, from the schema. */
export function typeName(schema: Schema): string {
  const def = schema._zod.def as { type: string; element?: Schema; options?: Schema[]; values?: unknown[]; entries?: Record<string, string> };
  switch (def.type) {
    case 'string':
      return 'string';
    case 'boolean':
      return 'boolean';
    case 'number':
      return numberRange(schema as z.ZodNumber);
    case 'enum':
      return `one of ${Object.values(def.entries ?? {}).join(', ')}`;
    case 'literal':
      return (def.values ?? []).map(String).join(', ');
    case 'array':
      return `list of ${typeName(unwrap(def.element!).at(-1)!)}`;
    case 'union':
      return (def.options ?? []).map((option) => typeName(unwrap(option).at(-1)!)).join(', or ');
    case 'object':
      return 'mapping';
    default:
      return def.type;
  }
}

function numberRange(schema: z.ZodNumber): string {
  const kind = schema.format === 'safeint' ? 'integer' : 'number';
  const min = schema.minValue ?? -SAFE;
  const max = schema.maxValue ?? SAFE;
  if (min > -SAFE && max < SAFE) return `${kind} ${min}-${max}`;
  if (min > -SAFE) return `${kind} >= ${min}`;
  if (max < SAFE) return `${kind} <= ${max}`;
  return kind;
}
