// @ts-check
// ESLint for flo: typescript-eslint's type-checked recommended rules over every TypeScript source and test,
// ESLint's recommended rules over the few plain JavaScript files (CLI shim, trainer scripts, test apps).
import js from "@eslint/js";
import globals from "globals";
import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["dist/**", "node_modules/**", "out/**", "coverage/**"] },
  { linterOptions: { reportUnusedDisableDirectives: "error" } },
  {
    files: ["**/*.ts"],
    extends: [tseslint.configs.recommendedTypeChecked],
    languageOptions: {
      // One program for sources and tests: tsconfig.test.json extends the build config with test/.
      parserOptions: { project: "./tsconfig.test.json", tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      "@typescript-eslint/no-unused-vars": [
        "error",
        { args: "after-used", argsIgnorePattern: "^_", varsIgnorePattern: "^_", caughtErrors: "all", caughtErrorsIgnorePattern: "^_", ignoreRestSiblings: true },
      ],
      "no-unreachable": "error",
      // A `let` assigned after a closure that reads it (and checks it is set) cannot be a `const`.
      "prefer-const": ["error", { ignoreReadBeforeAssign: true }],
      // Async implementations of Promise-returning interfaces (in-memory stores, fakes) keep `async` so a
      // synchronous throw still becomes a rejection; no-floating-promises/no-misused-promises catch real slips.
      "@typescript-eslint/require-await": "off",
      // Rejections forward an AbortSignal's reason or a caught value unchanged, so callers can recognise it.
      "@typescript-eslint/prefer-promise-reject-errors": ["error", { allowThrowingAny: true, allowThrowingUnknown: true }],
    },
  },
  {
    files: ["test/**/*.ts"],
    rules: {
      // Tests read untyped HTTP/JSON bodies and drive fakes of untyped wire protocols (AMQP, ARM); `expect`
      // is what checks those values, and typing every body would restate the production types in each test.
      "@typescript-eslint/no-explicit-any": "off",
      "@typescript-eslint/no-unsafe-argument": "off",
      "@typescript-eslint/no-unsafe-assignment": "off",
      "@typescript-eslint/no-unsafe-call": "off",
      "@typescript-eslint/no-unsafe-member-access": "off",
      "@typescript-eslint/no-unsafe-return": "off",
    },
  },
  {
    files: ["**/*.js"],
    extends: [js.configs.recommended],
    languageOptions: { sourceType: "commonjs", globals: { ...globals.node } },
    rules: {
      "no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_", caughtErrorsIgnorePattern: "^_" }],
    },
  },
);
