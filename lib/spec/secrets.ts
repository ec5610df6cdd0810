/**
 * Specs are stored, logged, shown in reports and sent to every silo: they are not the place for
 * secrets. These checks reject names and values that look like credentials. They never echo a
 * suspicious value back (the error names the field and the kind of secret only).
 */

/** Words that name a credential on their own (compared against the key split into words). */
const SECRET_WORDS = new Set([
  "secret",
  "secrets",
  "password",
  "passwd",
  "passwort",
  "pwd",
  "passphrase",
  "apikey",
  "credential",
  "credentials",
  "connectionstring",
  "connstr",
  "sas",
  "sastoken",
  "accountkey",
  "accesskey",
  "privatekey",
  "bearer",
]);
/** Word pairs that name a credential together: api_key, accessKey, connection-string, hf_token... */
const SECRET_PAIRS: [string, string][] = [
  ["api", "key"],
  ["access", "key"],
  ["account", "key"],
  ["private", "key"],
  ["secret", "key"],
  ["storage", "key"],
  ["subscription", "key"],
  ["shared", "key"],
  ["signing", "key"],
  ["encryption", "key"],
  ["master", "key"],
  ["connection", "string"],
  ["conn", "string"],
  ["conn", "str"],
  ["client", "secret"],
];
/**
 * "token" alone is a credential, but ML has many non-secret tokens (pad_token, max_tokens,
 * token_budget): only these qualifiers make it one.
 */
const TOKEN_QUALIFIERS = new Set([
  "auth",
  "access",
  "refresh",
  "id",
  "sas",
  "bearer",
  "hf",
  "huggingface",
  "github",
  "gh",
  "gitlab",
  "api",
  "personal",
  "pat",
  "secret",
  "session",
  "service",
  "bot",
  "slack",
  "npm",
  "pypi",
  "wandb",
  "security",
  "oauth",
  "git",
]);
/** Names that point at where a secret lives (a file, an env var, a Key Vault secret name) are fine. */
const REFERENCE_SUFFIXES = new Set([
  "file",
  "path",
  "dir",
  "name",
  "env",
  "var",
  "variable",
  "ref",
  "reference",
  "uri",
  "url",
  "endpoint",
  "id",
  "length",
  "len",
  "count",
  "budget",
  "limit",
  "size",
  "type",
]);

/** Splits `hfToken`, `HF_TOKEN`, `api-key`, `storage.key` into lower-case words. */
export function keyWords(key: string): string[] {
  return key
    .replace(/([a-z0-9])([A-Z])/g, "$1 $2")
    .replace(/([A-Z]+)([A-Z][a-z])/g, "$1 $2")
    .split(/[^A-Za-z0-9]+/)
    .filter(Boolean)
    .map((word) => word.toLowerCase());
}

/** Returns why a key name looks like it holds a secret, or undefined when it does not. */
export function secretKeyReason(key: string): string | undefined {
  const words = keyWords(key);
  if (words.length === 0 || (words.length > 1 && REFERENCE_SUFFIXES.has(words[words.length - 1]))) return undefined;
  const word = words.find((w) => SECRET_WORDS.has(w));
  if (word) return `the name contains "${word}"`;
  for (let i = 0; i < words.length; i++) {
    if (words[i] === "token" && (words.length === 1 || (i > 0 && TOKEN_QUALIFIERS.has(words[i - 1])))) {
      return `the name contains "${i > 0 ? `${words[i - 1]} ` : ""}token"`;
    }
    if (i + 1 < words.length && SECRET_PAIRS.some(([a, b]) => words[i] === a && words[i + 1] === b)) return `the name contains "${words[i]} ${words[i + 1]}"`;
  }
  return undefined;
}

const SECRET_VALUE_PATTERNS: [RegExp, string][] = [
  [/(^|;)\s*(AccountKey|SharedAccessKey|SharedAccessSignature|SharedAccessKeyName)\s*=/i, "an Azure connection string"],
  [/(^|;)\s*(Password|Pwd)\s*=/i, "a database connection string with a password"],
  [/[?&]sig=[^&\s]+/i, "a URL carrying a SAS token (sig=)"],
  [/-----BEGIN [A-Z ]*PRIVATE KEY-----/, "a PEM private key"],
  [/\b(ghp|gho|ghs|ghu|github_pat)_[A-Za-z0-9_]{20,}/, "a GitHub token"],
  [/\bhf_[A-Za-z0-9]{30,}/, "a Hugging Face token"],
  [/\bAKIA[0-9A-Z]{16}\b/, "an AWS access key id"],
  [/\bxox[abposr]-[A-Za-z0-9-]{10,}/, "a Slack token"],
  [/\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]+/, "a JSON Web Token"],
  [/:\/\/[^/\s:@]+:[^/\s@]+@/, "a URL with an embedded password"],
];

/** Returns what kind of secret a value looks like, or undefined when it does not. */
export function secretValueReason(value: string): string | undefined {
  for (const [pattern, what] of SECRET_VALUE_PATTERNS) if (pattern.test(value)) return what;
  return undefined;
}

/** A command-line flag that names a credential, followed by a literal value (not a placeholder). */
const SECRET_FLAG =
  /(^|\s)--?(password|passwd|pwd|secret|client[-_]?secret|token|auth[-_]?token|access[-_]?token|api[-_]?key|access[-_]?key|account[-_]?key|sas[-_]?token|connection[-_]?string)(=|\s+)(?!\$\{\{)(?!-)\S+/i;

/** Returns why a command line looks like it passes a literal secret, or undefined. */
export function secretInCommandReason(command: string): string | undefined {
  const flag = SECRET_FLAG.exec(command);
  if (flag) return `a literal value after --${flag[2]}`;
  return secretValueReason(command);
}
