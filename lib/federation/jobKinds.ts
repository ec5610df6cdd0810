/**
 * How `submitSiloJob` builds each kind of silo job from the federation spec: one entry per job
 * kind of lib/compute/siloCompute.ts (the compiler insists on it). The compute side of a kind
 * (event prefix, output name, required files) lives there; this side says which spec section the
 * job comes from and where its output lands in the store layout.
 */
import type { JobInput, JobKind } from "../compute/siloCompute";
import { sessionPaths, UNMASK_COMMAND } from "./secure";
import { siloEvaluationFolder, siloUpdateFolder } from "../models/storeLayout";
import type { FederationSpec } from "../spec";
import type { SubmitJobInput } from "./types";

/** The part of the spec a kind's job is defined by (training.* for `train`). */
export interface JobSection {
  command: string;
  code?: string;
  /** The uploaded copy of a local `code` folder (`flo submit`), which azureml silos run. */
  uploadedCode?: string;
  environment?: string;
  /** Literal inputs, the same for every silo. */
  parameters: Record<string, string | number | boolean>;
}

export interface JobRecipe {
  /** The spec section of the kind's job; throws when the spec has none (the federation never asks then). */
  section(spec: FederationSpec): JobSection;
  /** The store folder (store layout) the job's output folder is copied to. */
  outputFolder(job: Pick<SubmitJobInput, "federationId" | "round" | "silo" | "secure">): string;
  /** Inputs beyond the section's parameters, the silo's inputs, the built-ins and the `parameters` of the submit. */
  extraInputs?(spec: FederationSpec, job: SubmitJobInput): Record<string, JobInput>;
}

export const JOB_RECIPES = {
  train: {
    section: (spec) => spec.training,
    outputFolder: ({ federationId, round, silo, secure }) => (secure ? sessionPaths(federationId, round, secure.attempt).updateFolder(silo) : siloUpdateFolder(federationId, round, silo)),
  },
  unmask: {
    section: () => ({ command: UNMASK_COMMAND, parameters: {} }),
    outputFolder: ({ federationId, round, silo, secure }) => {
      if (!secure) throw new Error(`unmask job of silo ${silo}: no secure aggregation session`);
      return sessionPaths(federationId, round, secure.attempt).revealFolder(silo);
    },
  },
  evaluate: {
    section: (spec) => {
      if (!spec.evaluation) throw new Error(`federation ${spec.name} has no evaluation section: no evaluation job to submit`);
      return spec.evaluation;
    },
    outputFolder: ({ federationId, round, silo }) => siloEvaluationFolder(federationId, round, silo),
  },
} as const satisfies Record<JobKind, JobRecipe>;

export function jobRecipe(kind: JobKind): JobRecipe {
  return JOB_RECIPES[kind];
}
