import { type ParseArgsConfig, parseArgs } from "node:util";
import { suggest } from "../suggest.js";

/** A command line we cannot use: one line for the user, exit code 2, never a stack trace. */
export class UsageError extends Error {
  override name = "UsageError";
}

/**
 * node:util's parseArgs (strict, its default) with its errors turned into one line a user can act
 * on: an unknown option names the closest known one ("unknown option --bright; did you mean --brightness?").
 */
export function parseCommandLine<T extends ParseArgsConfig>(config: T): ReturnType<typeof parseArgs<T>> {
  try {
    // The same config with other args: its result type is the caller's.
    return parseArgs({ ...config, args: joinNegativeValues(config) }) as ReturnType<typeof parseArgs<T>>;
  } catch (error) {
    throw new UsageError(explain(error, config));
  }
}

function explain(error: unknown, config: ParseArgsConfig): string {
  const { code, message } = error as { code?: string; message?: string };
  const known = Object.keys(config.options ?? {});
  if (code === "ERR_PARSE_ARGS_UNKNOWN_OPTION") {
    const name = unknownOption(config, known);
    const hint = name && suggest(name.replace(/^-+/, ""), known);
    return `unknown option${name ? ` ${name}` : ""}${hint ? `; did you mean --${hint}?` : ""}`;
  }
  if (code === "ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL") {
    const argument = /'([^']*)'/.exec(message ?? "")?.[1];
    return `unexpected argument${argument === undefined ? "" : ` "${argument}"`}`;
  }
  // ERR_PARSE_ARGS_INVALID_OPTION_VALUE: "Option '--hue <value>' argument missing", or "Option '--on'
  // does not take an argument".
  const option = /'(?:-\w, )?(--?[\w-]+)/.exec(message ?? "")?.[1];
  if (option && /argument missing/.test(message ?? "")) return `${option} needs a value`;
  if (option && /does not take an argument/.test(message ?? "")) return `${option} takes no value`;
  return String(message ?? error).split(". ")[0] ?? "invalid arguments";
}

/** The option the strict parse refused, found again by a lenient parse (its tokens say what it was). */
function unknownOption(config: ParseArgsConfig, known: string[]): string | undefined {
  const { tokens } = parseArgs({ ...config, strict: false, allowPositionals: true, tokens: true });
  const token = tokens.find((t) => t.kind === "option" && !known.includes(t.name));
  return token?.kind === "option" ? token.rawName : undefined;
}

/**
 * `--brightness -0.1`: parseArgs takes `-0.1` for an option and asks for `--brightness=-XYZ`. A value
 * that is a number is one, whatever its sign: joined to its option, it reaches the range check, which
 * says what is allowed.
 */
function joinNegativeValues(config: ParseArgsConfig): string[] {
  const args = config.args ?? process.argv.slice(2);
  const takesValue = (arg: string) => {
    const name = arg.startsWith("--") ? arg.slice(2) : undefined;
    return name !== undefined && config.options?.[name]?.type === "string";
  };
  const joined: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] ?? "";
    const next = args[i + 1];
    if (takesValue(arg) && next !== undefined && /^-(\d|\.\d)/.test(next)) {
      joined.push(`${arg}=${next}`);
      i++;
    } else joined.push(arg);
  }
  return joined;
}
