export declare const DELTARS_PACKAGES: string[];
export declare class DeltaRsError extends Error {
  details?: string;
}
export declare function ensureDeltaRs(opts?: { env?: NodeJS.ProcessEnv; quiet?: boolean }): { python: string; built: boolean };
