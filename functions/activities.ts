/** Activity registrations: thin adapters onto lib/federation/activities.ts. */
import * as df from "durable-functions";
import { federationServices } from "../lib/federation/services";
import * as activities from "../lib/federation/activities";
import { notifyPartners } from "../lib/federation/notify";
import { Activities } from "../lib/federation/types";
import { finalizeFederation, recordEvaluation } from "../lib/federation/evaluation";
import { registerModel } from "../lib/federation/registration";
import type {
  AggregateRoundInput,
  AggregateSecureRoundInput,
  FinalizeInput,
  JobRefInput,
  RecordEvaluationInput,
  RecordRoundFailureInput,
  RegisterModelInput,
  SecureSplitInput,
  SubmitJobInput,
} from "../lib/federation/types";
import type { PartnerNotice } from "../lib/federation/notify";

df.app.activity(Activities.submitSiloJob, { handler: async (input: SubmitJobInput) => activities.submitSiloJob(await federationServices(), input) });
df.app.activity(Activities.getSiloJobStatus, { handler: async (input: JobRefInput) => activities.getSiloJobStatus(await federationServices(), input) });
df.app.activity(Activities.cancelSiloJob, { handler: async (input: JobRefInput) => activities.cancelSiloJob(await federationServices(), input) });
df.app.activity(Activities.aggregateRound, { handler: async (input: AggregateRoundInput) => activities.aggregateRound(await federationServices(), input) });
df.app.activity(Activities.aggregateSecureRound, { handler: async (input: AggregateSecureRoundInput) => activities.aggregateSecureRound(await federationServices(), input) });
df.app.activity(Activities.fixSecureSplit, { handler: async (input: SecureSplitInput) => activities.fixSecureSplit(await federationServices(), input) });
df.app.activity(Activities.recordRoundFailure, { handler: async (input: RecordRoundFailureInput) => activities.recordRoundFailure(await federationServices(), input) });
df.app.activity(Activities.recordEvaluation, { handler: async (input: RecordEvaluationInput) => recordEvaluation(await federationServices(), input) });
df.app.activity(Activities.finalizeFederation, { handler: async (input: FinalizeInput) => finalizeFederation(await federationServices(), input) });
df.app.activity(Activities.registerModel, { handler: async (input: RegisterModelInput) => registerModel(await federationServices(), input) });
df.app.activity(Activities.notifyPartners, { handler: async (input: PartnerNotice, context) => notifyPartners(await federationServices(), input, (m) => context.log(m)) });
