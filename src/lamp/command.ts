import * as z from "zod/mini";
import { isTransition, isUnit, MAX_TRANSITION_S, scanCommand } from "./command-scan.js";
import { type LampState, makeState, unit } from "./state.js";

/** Larger payloads are refused before parsing: a lamp command is under 200 bytes. */
export const MAX_PAYLOAD_BYTES = 4096;

export type CommandErrorCode =
  | "payload_too_large"
  | "invalid_json"
  | "invalid_field"
  | "unknown_field"
  | "retained_command";

/** A rejected command: the code and message go to `<base>/error`, with the sender when known. */
export class CommandError extends Error {
  constructor(
    readonly code: CommandErrorCode,
    message: string,
    readonly client: string | null = null,
  ) {
    super(message);
    this.name = "CommandError";
  }
}

// zod/mini, as in config.ts: the bundle then carries only the checks used, not all of zod (docs/performance.md).
// Built on the first refusal: a valid command never reaches it (see validate()), and building it cost
// every start a millisecond.
let schema: ReturnType<typeof buildSchema> | undefined;
function buildSchema() {
  return z.strictObject({
    on: z.optional(z.boolean()),
    color: z.optional(z.strictObject({ h: z.optional(unit), s: z.optional(unit) })),
    brightness: z.optional(unit),
    transition: z.optional(z.number().check(z.minimum(0), z.maximum(MAX_TRANSITION_S))),
    // null is what the lamp itself reports for an unnamed sender; a UI echoing a state back may send it.
    client: z.optional(z.nullable(z.string().check(z.minLength(1), z.maxLength(64)))),
    identify: z.optional(z.boolean()),
  });
}

/** A validated command: only the fields the sender gave. */
export interface Command {
  readonly on?: boolean;
  readonly color?: { readonly h?: number; readonly s?: number };
  readonly brightness?: number;
  /** Seconds; absent means the configured default. */
  readonly transition?: number;
  readonly client?: string | null;
  /** Blink for a few seconds so a person can find this lamp, then show the state again; not stored. */
  readonly identify?: boolean;
}

const decoder = new TextDecoder("utf-8", { fatal: true });

function describe(issue: z.core.$ZodIssue): { code: CommandErrorCode; message: string } {
  const where = issue.path.join(".");
  if (issue.code === "unrecognized_keys") {
    const names = issue.keys.map((key) => (where ? `${where}.${key}` : key));
    return {
      code: "unknown_field",
      message: `unknown field${names.length > 1 ? "s" : ""}: ${names.join(", ")}`,
    };
  }
  const expected: Record<string, string> = {
    on: "a boolean",
    "color.h": "a number from 0 to 1",
    "color.s": "a number from 0 to 1",
    brightness: "a number from 0 to 1",
    transition: `a number of seconds from 0 to ${MAX_TRANSITION_S}`,
    client: "a string of 1 to 64 characters",
    identify: "a boolean",
    color: 'an object like {"h": 0.5, "s": 1}',
  };
  return {
    code: "invalid_field",
    message: `${where || "payload"} must be ${expected[where] ?? "valid"}`,
  };
}

/**
 * Bytes off the wire -> a Command, or a CommandError saying exactly what was wrong. All or nothing:
 * one bad field rejects the whole command.
 */
export function parseCommand(payload: Uint8Array): Command {
  if (payload.byteLength > MAX_PAYLOAD_BYTES) {
    throw new CommandError(
      "payload_too_large",
      `payload is ${payload.byteLength} bytes; the limit is ${MAX_PAYLOAD_BYTES}`,
    );
  }
  const common = scanCommand(payload);
  if (common) return common;
  let text: string;
  try {
    text = decoder.decode(payload);
  } catch {
    throw new CommandError("invalid_json", "payload is not valid UTF-8");
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new CommandError("invalid_json", `payload is not JSON: ${(error as Error).message}`);
  }
  if (json === null || typeof json !== "object" || Array.isArray(json)) {
    throw new CommandError("invalid_json", 'payload must be a JSON object like {"on": true}');
  }
  return validCommand(json) ?? checkWithSchema(json);
}

/**
 * The common case, a valid command, checked by hand: zod's safeParse cost about 2% of the agent's CPU
 * per command. Returns the command, or undefined for anything it does not accept, which checkWithSchema
 * then judges and explains; test/unit/lamp/command-fast.test.ts holds the two to identical verdicts.
 * The object is JSON.parse's own, so it is returned as is: its keys are exactly the checked ones.
 */
export function validCommand(json: object): Command | undefined {
  const fields = json as Record<string, unknown>;
  for (const key in fields) {
    const value = fields[key];
    switch (key) {
      case "on":
      case "identify":
        if (typeof value !== "boolean") return undefined;
        break;
      case "brightness":
        if (!isUnit(value)) return undefined;
        break;
      case "transition":
        if (!isTransition(value)) return undefined;
        break;
      case "client":
        if (value !== null && !isClientName(value)) return undefined;
        break;
      case "color": {
        if (value === null || typeof value !== "object" || Array.isArray(value)) return undefined;
        const color = value as Record<string, unknown>;
        for (const part in color) {
          if ((part !== "h" && part !== "s") || !isUnit(color[part])) return undefined;
        }
        break;
      }
      default:
        return undefined;
    }
  }
  return json as Command;
}

/** The schema's verdict on a parsed JSON object: the command, or a CommandError explaining each fault. */
export function checkWithSchema(json: object): Command {
  // The sender is named in the error even when another field is bad, so its UI can show the error.
  const client = clientField(json);
  schema ??= buildSchema();
  const result = schema.safeParse(json);
  if (!result.success) {
    const issues = result.error.issues.map(describe);
    const code = issues.some((i) => i.code === "unknown_field") ? "unknown_field" : "invalid_field";
    throw new CommandError(code, issues.map((i) => i.message).join("; "), client);
  }
  return result.data;
}

function clientField(json: object): string | null {
  const raw = (json as Record<string, unknown>).client;
  return isClientName(raw) ? raw : null;
}

/** 1 to 64 characters, counted as zod counts them: code points, so an emoji is one, not two. */
function isClientName(value: unknown): value is string {
  if (typeof value !== "string" || value.length < 1) return false;
  if (value.length <= 64) return true;
  if (value.length > 128) return false;
  let count = 0;
  for (const _ of value) if (++count > 64) return false;
  return true;
}

/** The `client` a payload names, when it is a JSON object that names one; for errors about it. */
export function senderOf(payload: Uint8Array): string | null {
  if (payload.byteLength > MAX_PAYLOAD_BYTES) return null;
  try {
    const json: unknown = JSON.parse(decoder.decode(payload));
    return json !== null && typeof json === "object" ? clientField(json) : null;
  } catch {
    return null;
  }
}

/** The state a command leads to from `current`; every value quantised to two decimals. */
export function applyCommand(current: LampState, command: Command): LampState {
  return makeState(
    command.on ?? current.on,
    command.color?.h ?? current.color.h,
    command.color?.s ?? current.color.s,
    command.brightness ?? current.brightness,
  );
}
