// Entry point of the Functions app (package.json "main"). Each trigger module registers itself on import.
export {};
