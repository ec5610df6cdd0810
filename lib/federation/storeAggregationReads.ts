/**
 * How the aggregation activity has the engine read updates from blob storage, where a request, not
 * the engine, is the limit: rows of 4.25 MiB of F32 per ranged read (fewer round trips; Azurite
 * also MD5-hashes every range up to 4 MiB), one chunk read ahead, and the sha256 of what is read
 * computed on the engine's thread (~1.8 GB/s, several times what storage serves one activity), so
 * no hash-worker threads or the read slot they hold. The buffer budget stays the engine's default:
 * with many updates the rows shrink to fit it. `npm run bench:aggregate` measures these options.
 */
export const STORE_AGGREGATION_READS = { chunkElements: (4.25 * (1 << 20)) / 4, prefetchChunks: 1, hashWorkers: 0 } as const;
