// Invariants of infra/ (Bicep), read from syntax trees of a real Bicep grammar (test/helpers/bicep.ts):
// every file must parse without errors, and every check below reads declarations, module wiring,
// resource bodies and role assignments from the tree.
import { existsSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { parse as parseYaml } from "yaml";
import { FLO_APP_TAG_VALUE, FLO_TAGS } from "../lib/compute/siloCompute";
import { rejectedQueueName } from "../lib/messaging/wireMessages";
import {
  BicepSyntaxError,
  bicepFilesUnder,
  calls,
  evaluate,
  expr,
  literal,
  location,
  parseBicep,
  prop,
  propNode,
  references,
  type BicepFile,
  type BicepModule,
  type BicepResource,
  type SyntaxNode,
} from "./helpers/bicep";

const ROOT = join(__dirname, "..");
const INFRA = join(ROOT, "infra");

const files = bicepFilesUnder(INFRA).map((path) => parseBicep(path));
const byPath = new Map(files.map((f) => [f.path, f]));
const file = (path: string): BicepFile => {
  const found = byPath.get(join(INFRA, path));
  if (!found) throw new Error(`infra/${path} is not among the parsed files`);
  return found;
};
const main = file("main.bicep");
const siloEntry = file("silo.bicep");
const names = file("names.bicep");
const ENTRY_POINTS = new Set([main.path, siloEntry.path]);

function moduleOf(f: BicepFile, symbol: string): BicepModule {
  const found = f.modules.find((m) => m.symbol === symbol);
  if (!found) throw new Error(`${f.name}: no module ${symbol}`);
  return found;
}
function resourceOf(f: BicepFile, symbol: string): BicepResource {
  const found = f.resources.find((r) => r.symbol === symbol);
  if (!found) throw new Error(`${f.name}: no resource ${symbol}`);
  return found;
}
/** Calls an exported function of infra/names.bicep. */
const nameFunction = (fn: string, ...args: unknown[]) => {
  const declared = names.functions.get(fn);
  if (!declared) throw new Error(`infra/names.bicep has no function ${fn}`);
  return evaluate(declared.body, { file: names, values: Object.fromEntries(declared.parameters.map((p, i) => [p, args[i]])) });
};

const ROLE = {
  storageBlobDataContributor: "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
  storageBlobDataReader: "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1",
  storageQueueDataContributor: "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
  storageTableDataContributor: "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
  serviceBusDataReceiver: "4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0",
  serviceBusDataSender: "69a216fc-b8fb-44d8-bc22-1f3c2cd27a39",
  azureMlDataScientist: "f6c7c914-8db3-469d-8ca1-694a8f32e121",
  monitoringMetricsPublisher: "3913510d-42f4-4e42-8a64-420c390055eb",
};

const TOO_BROAD: Record<string, string> = {
  "8e3af657-a8ff-443c-a75c-2fe8c4bcb635": "Owner",
  "b24988ac-6180-42a0-ab88-20f7382dd24c": "Contributor",
  "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9": "User Access Administrator",
  "81a9662b-bebf-436f-a333-f67b29880f12": "Storage Account Key Operator Service Role",
  "17d1049b-9a84-46fb-8f53-869881c3d3ab": "Storage Account Contributor",
  "c12c1c16-33a1-487b-954d-41c89c60f349": "Reader and Data Access",
  "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
  "090c5cfd-751d-490a-894a-3ce6f1109419": "Azure Service Bus Data Owner",
  "1e241071-0855-49ea-94dc-649edcd759de": "EventGrid Contributor",
};

// Azure Service Bus Data Receiver (4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0) as Azure defines it.
const DATA_RECEIVER = {
  actions: ["Microsoft.ServiceBus/*/queues/read", "Microsoft.ServiceBus/*/topics/read", "Microsoft.ServiceBus/*/topics/subscriptions/read"],
  dataActions: ["Microsoft.ServiceBus/*/receive/action"],
};

/* --------------------------------------------- role assignments --------------------------------------------- */

interface CustomRole {
  file: string;
  symbol: string;
  actions: string[];
  dataActions: string[];
  assignableScopes: string | undefined;
}

function customRoles(): CustomRole[] {
  return files.flatMap((f) =>
    f.resources
      .filter((r) => r.type === "Microsoft.Authorization/roleDefinitions")
      .map((r) => {
        const permissions = prop(r, "properties.permissions") as { actions: string[]; notActions: string[]; dataActions: string[]; notDataActions: string[] }[];
        expect({ where: `${f.name} ${r.symbol}`, count: permissions.length, type: prop(r, "properties.type") }).toEqual({ where: `${f.name} ${r.symbol}`, count: 1, type: "customRole" });
        return { file: f.name, symbol: r.symbol, actions: permissions[0].actions, dataActions: permissions[0].dataActions, assignableScopes: expr(propNode(r, "properties.assignableScopes")) };
      }),
  );
}

interface RoleAssignment {
  file: string;
  symbol: string;
  /** A built-in role's GUID, or `custom:<symbol>` for a role defined in the same file. */
  role: string;
  /** The scope symbol; `resourceGroup` when the assignment has no scope (the file's resource group). */
  scope: string;
  resource: BicepResource;
}

function roleAssignments(): RoleAssignment[] {
  return files.flatMap((f) =>
    f.resources
      .filter((r) => r.type === "Microsoft.Authorization/roleAssignments" && !r.existing)
      .map((r) => {
        const where = `${location(f, r.node)} ${r.symbol}`;
        const definition = propNode(r, "properties.roleDefinitionId");
        if (!definition) throw new Error(`${where}: no roleDefinitionId`);
        let role: string | undefined;
        if (definition.type === "call_expression" && definition.childForFieldName("function")!.text === "subscriptionResourceId") {
          const [kind, id] = definition.childForFieldName("arguments")!.namedChildren;
          expect(literal(f, kind)).toBe("Microsoft.Authorization/roleDefinitions");
          const guid = id.type === "identifier" ? f.vars.get(id.text)?.value : id;
          role = guid ? (literal(f, guid) as string) : undefined;
        } else if (definition.type === "member_expression" && definition.childForFieldName("property")!.text === "id") {
          const symbol = definition.childForFieldName("object")!.text;
          if (f.resources.some((x) => x.symbol === symbol && x.type === "Microsoft.Authorization/roleDefinitions")) role = `custom:${symbol}`;
        }
        if (!role || !(/^[0-9a-f-]{36}$/.test(role) || role.startsWith("custom:")))
          throw new Error(`${where}: roleDefinitionId ${expr(definition)} is neither a built-in role GUID nor a role defined in this file`);
        const scope = r.scope;
        const scopeSymbol = scope === undefined ? "resourceGroup" : scope.type === "subscript_expression" ? scope.childForFieldName("object")!.text : scope.text;
        return { file: f.name, symbol: r.symbol, role, scope: scopeSymbol, resource: r };
      }),
  );
}

/** Rows of the docs/security.md role table: `| identity | scope | role (guid or custom role) | why |`. */
function securityTable(): { identity: string; scope: string; role: string; why: string }[] {
  const md = readFileSync(join(ROOT, "docs", "security.md"), "utf8");
  const section = md.slice(md.indexOf("## Role assignments"), md.indexOf("\n### ", md.indexOf("## Role assignments")));
  return section
    .split("\n")
    .filter((l) => /^\|.*\|\s*$/.test(l) && /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|custom role/.test(l))
    .map((l) => {
      const [identity, scope, role, why] = l
        .split("|")
        .slice(1, -1)
        .map((c) => c.trim());
      return { identity, scope, role, why };
    });
}

/** Every object property (key, value, file) in every file. */
function allProperties(): { file: BicepFile; key: string; value: SyntaxNode }[] {
  return files.flatMap((f) =>
    f.root.descendantsOfType("object_property").flatMap((property) => {
      const [key, value] = property.namedChildren;
      return value ? [{ file: f, key: key.text, value }] : [];
    }),
  );
}

/** The Function App's app settings: name -> value expression. */
function appSettings(): Map<string, string> {
  const site = resourceOf(file("modules/functionapp.bicep"), "functionApp");
  const settings = propNode(site, "properties.siteConfig.appSettings")!;
  return new Map(settings.namedChildren.filter((n) => n.type === "object").map((o) => [prop(o, "name") as string, expr(propNode(o, "value"))!]));
}

/* ------------------------------------------------- tests ------------------------------------------------- */

describe("infra/ parses with the Bicep grammar", () => {
  test("every file under infra/ parses without a syntax error (the reader sees the whole template)", () => {
    expect(files.map((f) => f.name).sort()).toEqual(expect.arrayContaining(["infra/main.bicep", "infra/silo.bicep", "infra/names.bicep", "infra/modules/servicebus.bicep"]));
    expect(files.length).toBe(17);
    expect(main.targetScope).toBe("subscription");
    expect(siloEntry.targetScope).toBe("resourceGroup");
    expect(main.modules.map((m) => m.symbol)).toEqual([
      "monitoring",
      "storage",
      "serviceBus",
      "functionApp",
      "appRoles",
      "partnerRoles",
      "siloEventTopics",
      "siloEventSenderRoles",
      "siloEventSubscriptions",
      "siloWorkspaceAccess",
      "siloExchangeReaders",
      "siloModelReaders",
      "registrationWorkspaceAccess",
    ]);
    expect(roleAssignments().length).toBe(19);
  });

  test("an injected syntax error is reported with file, line and column", () => {
    const source = main.source;
    const line = source.split("\n").findIndex((l) => l.startsWith("var duplicateDetectionWindow ="));
    expect(line).toBeGreaterThan(0);
    const broken = source.replace("var duplicateDetectionWindow =", "var duplicateDetectionWindow = =");
    let error: unknown;
    try {
      parseBicep(main.path, broken);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(BicepSyntaxError);
    expect((error as BicepSyntaxError).problems[0]).toMatch(new RegExp(`^infra/main\\.bicep:${line + 1}:\\d+: `));

    // A block left open: the grammar reports what is missing or unexpected, and where.
    const servicebus = file("modules/servicebus.bicep");
    const unclosed = servicebus.source.replace("    defaultMessageTimeToLive: 'P14D'\n  }\n}\n", "    defaultMessageTimeToLive: 'P14D'\n\n");
    expect(unclosed).not.toBe(servicebus.source);
    expect(() => parseBicep(servicebus.path, unclosed)).toThrow(/infra\/modules\/servicebus\.bicep:\d+:\d+: (missing|unexpected)/);
    // And the untouched text parses.
    expect(() => parseBicep(main.path, source)).not.toThrow();
  });
});

describe("infra/ Bicep", () => {
  test("every declared param is used in its file", () => {
    const unused: string[] = [];
    for (const f of files) {
      const used = new Set(references(f.root).map((id) => id.text));
      for (const p of f.params.keys()) if (!used.has(p)) unused.push(`${f.name}: ${p}`);
    }
    expect(unused).toEqual([]);
  });

  test("every module file exists and gets exactly its params (required ones included); imports name exported functions; every file is used", () => {
    const problems: string[] = [];
    const referenced = new Set<string>();
    for (const f of files) {
      for (const imported of f.imports) {
        referenced.add(imported.target);
        const target = byPath.get(imported.target);
        for (const fn of imported.names) {
          const declared = target?.functions.get(fn);
          if (!declared) problems.push(`${f.name}: imports ${fn}, not a function of ${relative(ROOT, imported.target)}`);
          else if (!declared.decorators.some((d) => d.name === "export")) problems.push(`${f.name}: imports ${fn}, which is not @export()ed`);
        }
      }
      for (const m of f.modules) {
        referenced.add(m.target);
        const target = byPath.get(m.target);
        if (!existsSync(m.target) || !target) {
          problems.push(`${f.name}: module ${m.symbol} -> missing file ${relative(ROOT, m.target)}`);
          continue;
        }
        const keys = m.params
          ? [
              ...propNode(m, "params")!
                .namedChildren.filter((c) => c.type === "object_property")
                .map((c) => c.namedChildren[0].text),
            ]
          : [];
        for (const key of keys) if (!target.params.has(key)) problems.push(`${f.name}: module ${m.symbol} passes unknown param ${key}`);
        for (const [p, info] of target.params) if (!info.optional && !keys.includes(p)) problems.push(`${f.name}: module ${m.symbol} misses required param ${p}`);
      }
      // <module>.outputs.<name> and <module>[i].outputs.<name> name real outputs
      for (const member of f.root.descendantsOfType("member_expression")) {
        const object = member.childForFieldName("object")!;
        if (object.type !== "member_expression" || object.childForFieldName("property")!.text !== "outputs") continue;
        const owner = object.childForFieldName("object")!;
        const symbol = owner.type === "subscript_expression" ? owner.childForFieldName("object")!.text : owner.text;
        const source = f.modules.find((x) => x.symbol === symbol);
        const output = member.childForFieldName("property")!.text;
        if (!source) problems.push(`${location(f, member)}: ${symbol} is not a module`);
        else if (!byPath.get(source.target)?.outputs.has(output)) problems.push(`${location(f, member)}: ${symbol}.outputs.${output} is not an output of ${relative(ROOT, source.target)}`);
      }
    }
    for (const f of files) if (!ENTRY_POINTS.has(f.path) && !referenced.has(f.path)) problems.push(`${f.name} is not referenced by any module or import`);
    expect(problems).toEqual([]);
  });

  test("no keys, connection strings or secrets; local auth disabled everywhere", () => {
    const hits: string[] = [];
    for (const f of files) {
      for (const call of calls(f.root, /^list/i)) hits.push(`${location(f, call)}: ${expr(call)}`);
      for (const content of f.root.descendantsOfType("string_content")) {
        if (/AccountKey=|SharedAccessKey|SharedAccessSignature|DefaultEndpointsProtocol=/i.test(content.text)) hits.push(`${location(f, content)}: a connection string`);
      }
      for (const node of [...f.params.values(), ...f.outputs.values()]) if (node.decorators.some((d) => d.name === "secure")) hits.push(`${f.name}: @secure() (nothing here is a secret)`);
    }
    const mustBe: Record<string, boolean> = { allowSharedKeyAccess: false, allowBlobPublicAccess: false, disableLocalAuth: true, DisableLocalAuth: true };
    for (const { file: f, key, value } of allProperties()) {
      if (key in mustBe && literal(f, value) !== mustBe[key]) hits.push(`${location(f, value)}: ${key}: ${value.text}`);
    }
    for (const name of appSettings().keys()) if (/^FUNCTIONS_WORKER_RUNTIME$|^FUNCTIONS_EXTENSION_VERSION$/.test(name)) hits.push(`app setting ${name} (Flex Consumption rejects it)`);
    expect(hits).toEqual([]);
    const storage = resourceOf(file("modules/storage.bicep"), "storage");
    expect(prop(storage, "properties")).toMatchObject({ allowSharedKeyAccess: false, allowBlobPublicAccess: false, minimumTlsVersion: "TLS1_2" });
    expect(prop(resourceOf(file("modules/servicebus.bicep"), "namespace"), "properties.disableLocalAuth")).toBe(true);
    expect(prop(resourceOf(file("modules/monitoring.bicep"), "applicationInsights"), "properties.DisableLocalAuth")).toBe(true);
  });

  test("Function App: Flex Consumption, Node 20, system identity, identity-based storage/Service Bus/App Insights settings", () => {
    const functionapp = file("modules/functionapp.bicep");
    expect(prop(resourceOf(functionapp, "plan"), "sku")).toEqual({ name: "FC1", tier: "FlexConsumption" });
    const site = resourceOf(functionapp, "functionApp");
    expect(prop(site, "properties.functionAppConfig.runtime")).toEqual({ name: "node", version: "20" });
    expect(prop(site, "identity")).toEqual({ type: "SystemAssigned" });
    expect(prop(site, "properties.functionAppConfig.deployment.storage.authentication")).toEqual({ type: "SystemAssignedIdentity" });
    const settings = Object.fromEntries(appSettings());
    expect(settings).toMatchObject({
      AzureWebJobsStorage__accountName: "storageAccountName",
      AzureWebJobsStorage__blobServiceUri: "blobEndpoint",
      AzureWebJobsStorage__queueServiceUri: "queueEndpoint",
      AzureWebJobsStorage__tableServiceUri: "tableEndpoint",
      APPLICATIONINSIGHTS_AUTHENTICATION_STRING: "'Authorization=AAD'",
      ServiceBusConnection__fullyQualifiedNamespace: "serviceBusFullyQualifiedNamespace",
      FLO_JOB_EVENTS_QUEUE: "jobEventsQueueName",
      FLO_NOTIFICATIONS_TOPIC: "notificationsTopicName",
      FLO_MODEL_CONTAINER: "modelContainerName",
      FLO_PARTNER_ALLOWLIST: "partnerAllowList",
    });
    expect(Object.keys(settings).filter((k) => k === "AzureWebJobsStorage" || k === "ServiceBusConnection" || k === "FLO_PARTNER_QUEUE")).toEqual([]);
  });

  test("the app settings the Bicep sets are the ones the app reads (local.settings.sample.json), and every Azure-relevant one is set", () => {
    const bicepSettings = new Set(appSettings().keys());
    const sample = Object.keys(JSON.parse(readFileSync(join(ROOT, "local.settings.sample.json"), "utf8")).Values as Record<string, string>).filter((k) => !k.endsWith("__comment"));
    // Local-only, or overrides for tests and sovereign clouds; the Function App never needs them.
    const notInAzure = [
      "FUNCTIONS_WORKER_RUNTIME", // Flex Consumption takes the runtime from functionAppConfig.runtime
      "AzureWebJobsStorage", // identity-based AzureWebJobsStorage__* instead
      "ServiceBusConnection", // identity-based ServiceBusConnection__* instead
      "FLO_LOCAL_COMPUTE", // never in Azure: it would let any API caller run commands on the Function App
      "FLO_LOCAL_JOBS_DIR",
      "FLO_LOCAL_BASE_DIR",
      "FLO_LOCAL_ALLOWED_PATHS",
      "FLO_LOCAL_JOBS_SECRET",
      "FLO_LOCAL_JOB_ENV",
      "FLO_MANAGED_IDENTITY_CLIENT_ID", // the app has a system-assigned identity
      "FLO_ARM_ENDPOINT",
      "FLO_ARM_CA_FILE",
      "FLO_AZUREML_BLOB_ENDPOINT",
      "FLO_AZUREML_CODE_ID", // optional: specs name their code asset (azureml:<name>:<version>)
      "FLO_AZUREML_API_VERSION",
    ];
    expect(sample.filter((k) => !notInAzure.includes(k) && !bicepSettings.has(k))).toEqual([]);
    // Local compute runs the spec's command on the host: the deployed app must never enable it.
    expect([...bicepSettings].filter((k) => k.startsWith("FLO_LOCAL_"))).toEqual([]);
    // No FLO_ setting in the Bicep that the app does not know (a typo would be silently ignored).
    expect([...bicepSettings].filter((k) => k.startsWith("FLO_") && !sample.includes(k))).toEqual([]);
    expect(expr(propNode(moduleOf(main, "functionApp"), "params.partnerAllowList"))).toBe("join(map(partners, partner => partner.name), ',')");
  });

  test("Service Bus: job-events and one command queue per partner (partner-<name>), each with duplicate detection + dead-lettering and a -rejected queue; no shared partner queue", () => {
    const sb = file("modules/servicebus.bicep");
    const queues = sb.resources.filter((r) => r.type === "Microsoft.ServiceBus/namespaces/queues");
    expect(queues.map((q) => q.symbol)).toEqual(["jobEventsQueue", "partnerQueues", "rejectedQueues"]);
    for (const q of queues) {
      const settings = ["requiresDuplicateDetection", "deadLetteringOnMessageExpiration", "duplicateDetectionHistoryTimeWindow", "maxDeliveryCount"].map((key) =>
        expr(propNode(q, `properties.${key}`)),
      );
      expect({ queue: q.symbol, settings }).toEqual({ queue: q.symbol, settings: ["true", "true", "duplicateDetectionWindow", "maxDeliveryCount"] });
    }
    expect(prop(resourceOf(sb, "notificationsTopic"), "properties.requiresDuplicateDetection")).toBe(true);

    const scope = (values: Record<string, unknown>) => ({ file: sb, files: byPath, values });
    const partnerQueues = resourceOf(sb, "partnerQueues");
    expect(expr(partnerQueues.loop!.source)).toBe("partnerQueueNames");
    expect(evaluate(sb.vars.get("partnerQueueNames")!.value, scope({ partnerNames: ["bank-a", "Insurer-B"] }))).toEqual(["partner-bank-a", "partner-Insurer-B"]);
    expect(nameFunction("partnerQueueName", "bank-a")).toBe("partner-bank-a");
    // rejected queues: job-events first, then each partner's, named as the app's rejectedQueueName()
    const rejected = resourceOf(sb, "rejectedQueues");
    expect(evaluate(rejected.loop!.source, scope({ jobEventsQueueName: "job-events", partnerNames: ["bank-a"] }))).toEqual(["job-events", "partner-bank-a"]);
    expect(evaluate(propNode(rejected, "name")!, scope({ [rejected.loop!.item]: "partner-bank-a" }))).toBe(rejectedQueueName("partner-bank-a"));
    expect(expr(sb.outputs.get("jobEventsRejectedQueueName")!.value)).toBe("rejectedQueues[0].name");
    expect(expr(sb.outputs.get("partnerQueueNames")!.value)).toBe("[for i in range(0, length(partnerNames)): partnerQueues[i].name]");
    expect(expr(sb.outputs.get("partnerRejectedQueueNames")!.value)).toBe("[for i in range(0, length(partnerNames)): rejectedQueues[i + 1].name]");
    expect(expr(resourceOf(sb, "partnerSubscriptions").loop!.source)).toBe("partnerNames");
    expect(expr(propNode(moduleOf(main, "serviceBus"), "params.partnerNames"))).toBe("map(partners, partner => partner.name)");
    expect(main.params.has("partnerCommandsQueueName")).toBe(false);
    // partners without an identity get a queue and a subscription but no role
    const partnerRoles = moduleOf(main, "partnerRoles");
    expect(expr(partnerRoles.condition)).toBe("!empty(partner.?principalId ?? '')");
    expect(expr(propNode(partnerRoles, "params.partnerQueueName"))).toBe(`serviceBus.outputs.partnerQueueNames[${partnerRoles.loop!.index}]`);
    expect(expr(partnerRoles.loop!.source)).toBe("partners");
  });

  test("each partner identity may send to its own queue only; the app receives from every trigger queue with the trigger role", () => {
    const partner = file("modules/partner-roles.bicep");
    const send = resourceOf(partner, "partnerSendsCommands");
    expect(expr(propNode(send, "scope"))).toBe("partnerQueue");
    expect(expr(propNode(resourceOf(partner, "partnerQueue"), "name"))).toBe("partnerQueueName");
    const appRoles = file("modules/app-roles.bicep");
    expect(expr(resourceOf(appRoles, "appPartnerQueueTriggers").loop!.source)).toBe("partnerQueueNames");
    expect(expr(propNode(resourceOf(appRoles, "appPartnerQueueTriggers"), "scope"))).toBe("partnerQueues[i]");
    expect(expr(propNode(resourceOf(appRoles, "partnerQueues"), "name"))).toBe("queueName");
    expect(expr(propNode(moduleOf(main, "appRoles"), "params.partnerQueueNames"))).toBe("serviceBus.outputs.partnerQueueNames");
    expect(expr(propNode(moduleOf(main, "appRoles"), "params.partnerRejectedQueueNames"))).toBe("serviceBus.outputs.partnerRejectedQueueNames");
  });

  test("Event Grid: per silo a system topic, RunStatusChanged/RunCompleted filtered on data.runTags.floApp, delivered with the topic's identity", () => {
    const subscription = resourceOf(file("modules/silo-event-subscription.bicep"), "jobEvents");
    expect(prop(subscription, "properties.filter.includedEventTypes")).toEqual(["Microsoft.MachineLearningServices.RunStatusChanged", "Microsoft.MachineLearningServices.RunCompleted"]);
    const filters = propNode(subscription, "properties.filter.advancedFilters")!.namedChildren;
    expect(filters.map((f) => ({ operatorType: prop(f, "operatorType"), key: prop(f, "key"), values: expr(propNode(f, "values")) }))).toEqual([
      { operatorType: "StringIn", key: `data.runTags.${FLO_TAGS.app}`, values: "[ floAppTagValue ]" },
    ]);
    expect(prop(subscription, "properties.deliveryWithResourceIdentity.identity")).toEqual({ type: "SystemAssigned" });
    expect(prop(subscription, "properties.deliveryWithResourceIdentity.destination.endpointType")).toBe("ServiceBusQueue");
    expect(propNode(subscription, "properties.destination")).toBeUndefined(); // only the identity-based destination
    expect(prop(resourceOf(file("modules/silo-event-topic.bicep"), "systemTopic"), "properties.topicType")).toBe("Microsoft.MachineLearningServices.Workspaces");
    // the advanced filter's value is the tag value lib/compute/siloCompute.ts puts on jobs
    expect(literal(main, main.params.get("floAppTagValue")!.defaultValue!)).toBe(FLO_APP_TAG_VALUE);
    // silo modules run in the silo's subscription/RG; the sender role is granted before the subscription is created
    const scopeOf = (symbol: string) => expr(moduleOf(main, symbol).scope);
    for (const symbol of ["siloEventTopics", "siloEventSubscriptions", "siloWorkspaceAccess"]) expect(scopeOf(symbol)).toBe("resourceGroup(silo.subscriptionId, silo.resourceGroup)");
    expect(scopeOf("siloExchangeReaders")).toBe("resourceGroup(silo.subscriptionId, silo.?exchangeResourceGroup ?? silo.resourceGroup)");
    expect(scopeOf("siloEventSenderRoles")).toBe("rg");
    expect(scopeOf("siloModelReaders")).toBe("rg");
    expect(expr(propNode(moduleOf(main, "siloEventSubscriptions"), "dependsOn"))).toBe("[ siloEventSenderRoles[i] ]");
  });

  test("main.bicep creates the event subscription for every silo whose topic identity is known, selfManaged included", () => {
    const subscriptions = moduleOf(main, "siloEventSubscriptions");
    const senders = moduleOf(main, "siloEventSenderRoles");
    expect(expr(subscriptions.condition)).toBe("!(silo.?selfManaged ?? false) || !empty(silo.?eventTopicPrincipalId ?? '')");
    expect(expr(senders.condition)).toBe(expr(subscriptions.condition));
    const topicName = propNode(subscriptions, "params.systemTopicName")!;
    const siloValues = (silo: Record<string, unknown>) => ({ file: main, files: byPath, values: { silo, i: 0, siloEventTopics: [{ outputs: { systemTopicName: "from-topic-module" } }] } });
    const enabled = (silo: Record<string, unknown>) => evaluate(subscriptions.condition!, siloValues(silo));
    expect(evaluate(topicName, siloValues({ workspace: "mlw_a", selfManaged: true }))).toBe("evgt-mlw-a");
    expect(evaluate(topicName, siloValues({ workspace: "mlw_a", selfManaged: true, eventTopicName: "existing-topic" }))).toBe("existing-topic");
    expect(evaluate(topicName, siloValues({ workspace: "mlw_a" }))).toBe("from-topic-module");
    expect([enabled({}), enabled({ selfManaged: true }), enabled({ selfManaged: true, eventTopicPrincipalId: "p" })]).toEqual([true, false, true]);
    expect(expr(propNode(subscriptions, "params.eventSubscriptionName"))).toBe("eventSubscriptionName(environmentName)");
    expect(expr(propNode(subscriptions, "params.floAppTagValue"))).toBe("floAppTagValue");
  });

  test("infra/silo.bicep (silo admin's own deployment): topic, grants to flo, and the deployer's narrow grants for the event subscription", () => {
    const siloSide = ["silo-event-topic.bicep", "silo-workspace-access.bicep", "silo-exchange-reader.bicep", "silo-deployer-access.bicep"].map((f) => join(INFRA, "modules", f));
    expect(siloEntry.modules.map((m) => m.target).sort()).toEqual([...siloSide].sort());
    for (const target of siloSide.slice(0, 3)) expect(main.modules.some((m) => m.target === target)).toBe(true);
    expect(expr(propNode(moduleOf(siloEntry, "eventTopic"), "params.systemTopicName"))).toBe("systemTopicName(workspaceName)");
    expect([...siloEntry.outputs.keys()].sort()).toEqual(["eventTopicName", "eventTopicPrincipalId"]);
    const principalType = siloEntry.params.get("orchestratorDeployerPrincipalType")!;
    expect(literal(siloEntry, principalType.decorators.find((d) => d.name === "allowed")!.args[0])).toEqual(["User", "Group", "ServicePrincipal"]);
    // main.bicep skips the silo-side modules for selfManaged silos but always makes the orchestrator-side grants
    for (const symbol of ["siloEventTopics", "siloWorkspaceAccess", "siloExchangeReaders"]) expect(expr(moduleOf(main, symbol).condition)).toBe("!(silo.?selfManaged ?? false)");
    expect(moduleOf(main, "siloModelReaders").condition).toBeUndefined();
    expect(expr(moduleOf(main, "siloModelReaders").loop!.source)).toBe("silos");
  });

  test("role assignments: narrow scopes, only roles in the docs/security.md table, none broader", () => {
    const assignments = roleAssignments();
    const builtIn = new Set(Object.values(ROLE));
    for (const a of assignments) {
      const where = `${a.file} ${a.symbol}`;
      expect({ where, broad: TOO_BROAD[a.role] }).toEqual({ where, broad: undefined });
      expect({ where, known: builtIn.has(a.role) || a.role.startsWith("custom:") }).toEqual({ where, known: true });
      expect({ where, name: expr(propNode(a.resource, "name")) }).toEqual({ where, name: expect.stringMatching(/^guid\(/) });
      // Managed identities everywhere but the silo's grants to the orchestrator's deployer (a person or a pipeline).
      const principalType = propNode(a.resource, "properties.principalType")!;
      if (a.file === "infra/modules/silo-deployer-access.bicep") expect(expr(principalType)).toBe("principalType");
      else expect({ where, principalType: literal(a.file, principalType) }).toEqual({ where, principalType: "ServicePrincipal" });
    }
    // Scoped to one resource, never a subscription; the one resource-group assignment holds only the nested-deployment role.
    expect(assignments.filter((a) => a.scope === "resourceGroup").map((a) => `${a.file} ${a.role}`)).toEqual(["infra/modules/silo-deployer-access.bicep custom:nestedDeployer"]);
    for (const f of files)
      for (const id of Object.keys(TOO_BROAD)) expect({ file: f.name, role: TOO_BROAD[id], present: f.source.includes(id) }).toEqual({ file: f.name, role: TOO_BROAD[id], present: false });

    const table = securityTable();
    const documented = new Set(table.flatMap((row) => row.role.match(/[0-9a-f]{8}-[0-9a-f-]{27}|custom role `[^`]+`/g) ?? []));
    const roleLabel = (role: string) => (role.startsWith("custom:") ? `custom role \`${role.slice("custom:".length)}\`` : role);
    for (const a of assignments) expect({ where: `${a.file} ${a.symbol}`, documented: documented.has(roleLabel(a.role)) }).toEqual({ where: `${a.file} ${a.symbol}`, documented: true });
    for (const row of table) expect(row.why.length).toBeGreaterThan(20);
    // each documented role is actually assigned (the table does not promise more than the template does)
    for (const label of documented) expect({ label, assigned: assignments.some((a) => roleLabel(a.role) === label) }).toEqual({ label, assigned: true });
  });

  test("custom roles: exactly the actions each needs, assignable in their resource group only, nothing that sends, writes data or grants access", () => {
    const roles = customRoles();
    expect(roles.map((r) => `${r.file} ${r.symbol}`).sort()).toEqual([
      "infra/modules/app-roles.bicep serviceBusTriggerRole",
      "infra/modules/registration-workspace-access.bicep modelRegistrar",
      "infra/modules/silo-deployer-access.bicep eventSubscriptionWriter",
      "infra/modules/silo-deployer-access.bicep nestedDeployer",
    ]);
    for (const r of roles) {
      expect({ role: r.symbol, assignableScopes: r.assignableScopes }).toEqual({ role: r.symbol, assignableScopes: "[ resourceGroup().id ]" });
      for (const action of [...r.actions, ...r.dataActions]) {
        expect({ role: r.symbol, action, forbidden: /^\*$|^Microsoft\.Authorization\/(?!\*\/read$)|\/send\/action$|^Microsoft\.ServiceBus\/\*$|listKeys|regenerateKey/i.test(action) }).toEqual({
          role: r.symbol,
          action,
          forbidden: false,
        });
      }
    }
    const bySymbol = new Map(roles.map((r) => [r.symbol, r]));
    // Service Bus trigger: Data Receiver's permissions plus the read the Flex Consumption scale controller needs.
    const trigger = bySymbol.get("serviceBusTriggerRole")!;
    expect(trigger.actions).toEqual([...DATA_RECEIVER.actions, "Microsoft.ServiceBus/namespaces/*/read"]);
    expect(trigger.dataActions).toEqual(DATA_RECEIVER.dataActions);
    expect(bySymbol.get("eventSubscriptionWriter")!.actions).toEqual([
      "Microsoft.EventGrid/systemTopics/read",
      "Microsoft.EventGrid/systemTopics/eventSubscriptions/read",
      "Microsoft.EventGrid/systemTopics/eventSubscriptions/write",
      "Microsoft.EventGrid/systemTopics/eventSubscriptions/delete",
    ]);
    expect(bySymbol.get("nestedDeployer")!.actions).toEqual(["Microsoft.Resources/deployments/*", "Microsoft.Resources/subscriptions/resourceGroups/read"]);
    // Model registration: models and their versions of the owner's workspace, nothing else (no jobs, data, computes, deletes).
    expect(bySymbol.get("modelRegistrar")!.actions).toEqual([
      "Microsoft.MachineLearningServices/workspaces/read",
      "Microsoft.MachineLearningServices/workspaces/models/read",
      "Microsoft.MachineLearningServices/workspaces/models/write",
      "Microsoft.MachineLearningServices/workspaces/models/versions/read",
      "Microsoft.MachineLearningServices/workspaces/models/versions/write",
    ]);
    const registration = file("modules/registration-workspace-access.bicep");
    expect(expr(propNode(resourceOf(registration, "orchestratorRegistersModels"), "scope"))).toBe("workspace");
    expect(expr(propNode(moduleOf(main, "registrationWorkspaceAccess"), "params.principalId"))).toBe("functionApp.outputs.principalId");
    expect(expr(moduleOf(main, "registrationWorkspaceAccess").loop!.source)).toBe("registrationWorkspaces");
    for (const r of ["eventSubscriptionWriter", "nestedDeployer", "modelRegistrar"]) expect(bySymbol.get(r)!.dataActions).toEqual([]);
    // the event-subscription role sits on the silo's topic only
    const deployer = file("modules/silo-deployer-access.bicep");
    expect(expr(propNode(resourceOf(deployer, "deployerWritesEventSubscriptions"), "scope"))).toBe("systemTopic");
    expect(expr(propNode(moduleOf(siloEntry, "deployerAccess"), "params.systemTopicName"))).toBe("eventTopic.outputs.systemTopicName");
  });

  test("exactly the intended grants: who gets what, where", () => {
    const roleName = (role: string) => Object.entries(ROLE).find(([, id]) => id === role)?.[0] ?? role;
    const summary = roleAssignments()
      .map((a) => `${a.file.replace("infra/modules/", "")} ${a.scope} ${roleName(a.role)}`)
      .sort();
    expect(summary).toEqual(
      [
        "app-roles.bicep applicationInsights monitoringMetricsPublisher",
        "app-roles.bicep jobEventsQueue custom:serviceBusTriggerRole",
        "app-roles.bicep partnerQueues custom:serviceBusTriggerRole",
        "app-roles.bicep jobEventsRejectedQueue serviceBusDataSender",
        "app-roles.bicep partnerRejectedQueues serviceBusDataSender",
        "app-roles.bicep notificationsTopic serviceBusDataSender",
        "app-roles.bicep deploymentContainer storageBlobDataContributor",
        "app-roles.bicep writableContainers storageBlobDataContributor",
        "app-roles.bicep storage storageQueueDataContributor",
        "app-roles.bicep storage storageTableDataContributor",
        "event-sender-role.bicep jobEventsQueue serviceBusDataSender",
        "partner-roles.bicep partnerQueue serviceBusDataSender",
        "partner-roles.bicep partnerSubscription serviceBusDataReceiver",
        "silo-deployer-access.bicep systemTopic custom:eventSubscriptionWriter",
        "silo-deployer-access.bicep resourceGroup custom:nestedDeployer",
        "silo-exchange-reader.bicep exchangeContainer storageBlobDataReader",
        "silo-model-reader.bicep modelContainer storageBlobDataReader",
        "silo-workspace-access.bicep workspace azureMlDataScientist",
        "registration-workspace-access.bicep workspace custom:modelRegistrar",
      ].sort(),
    );
  });

  test("the app's blob role is granted per container: flo's model container and each container the Functions/Durable host writes, pre-created", () => {
    const storage = file("modules/storage.bicep");
    const hubName = (JSON.parse(readFileSync(join(ROOT, "host.json"), "utf8")) as { extensions: { durableTask: { hubName: string } } }).extensions.durableTask.hubName;
    expect(evaluate(storage.vars.get("hostContainerNames")!.value, { file: storage, values: { taskHubName: hubName } })).toEqual([
      "azure-webjobs-hosts",
      "azure-webjobs-secrets",
      `${hubName.toLowerCase()}-leases`,
      `${hubName.toLowerCase()}-applease`,
      `${hubName.toLowerCase()}-largemessages`,
    ]);
    expect(expr(resourceOf(storage, "hostContainers").loop!.source)).toBe("hostContainerNames");
    expect(literal(main, main.params.get("taskHubName")!.defaultValue!)).toBe(hubName);
    expect(expr(propNode(moduleOf(main, "storage"), "params.taskHubName"))).toBe("taskHubName");
    expect(expr(propNode(moduleOf(main, "appRoles"), "params.writableContainerNames"))).toBe("concat([storage.outputs.modelContainerName], storage.outputs.hostContainerNames)");
    const appRoles = file("modules/app-roles.bicep");
    const blob = resourceOf(appRoles, "appStorageBlob");
    expect(expr(propNode(blob, "scope"))).toBe("writableContainers[i]");
    expect(expr(blob.loop!.source)).toBe("writableContainerNames");
    const blobGrants = roleAssignments().filter((a) => a.role === ROLE.storageBlobDataContributor);
    expect(blobGrants.map((a) => a.scope).sort()).toEqual(["deploymentContainer", "writableContainers"]);
    // Nothing blob-related is granted on the account itself.
    expect(
      roleAssignments()
        .filter((a) => a.scope === "storage")
        .map((a) => a.role)
        .sort(),
    ).toEqual([ROLE.storageQueueDataContributor, ROLE.storageTableDataContributor].sort());
  });

  test("SCM and FTP basic publishing credentials are disabled; the Entra ID front is optional and returns 401", () => {
    const app = file("modules/functionapp.bicep");
    const policies = app.resources.filter((r) => r.type === "Microsoft.Web/sites/basicPublishingCredentialsPolicies");
    expect(policies.map((r) => prop(r, "name")).sort()).toEqual(["ftp", "scm"]);
    for (const p of policies) expect(prop(p, "properties")).toEqual({ allow: false });
    const entra = app.resources.find((r) => r.type === "Microsoft.Web/sites/config")!;
    expect(prop(entra, "name")).toBe("authsettingsV2");
    expect(prop(entra, "properties.globalValidation")).toEqual({ requireAuthentication: true, unauthenticatedClientAction: "Return401" });
    expect(expr(entra.condition)).toBe("!empty(apiEntraClientId)");
    expect(literal(main, main.params.get("apiEntraClientId")!.defaultValue!)).toBe("");
  });

  test("silo compute reads only global models and uploaded code: the ABAC condition allows reads under global/ and code/ and listings of those folders, nothing else", () => {
    const reader = file("modules/silo-model-reader.bicep");
    const assignment = resourceOf(reader, "siloReadsGlobalModelsAndCode");
    expect(expr(propNode(assignment, "properties.condition"))).toBe("onlyGlobalModelsAndCode");
    expect(prop(assignment, "properties.conditionVersion")).toBe("2.0");
    const condition = evaluate(reader.vars.get("onlyGlobalModelsAndCode")!.value, { file: reader }) as string;
    let depth = 0;
    for (const ch of condition) {
      depth += ch === "(" ? 1 : ch === ")" ? -1 : 0;
      expect(depth).toBeGreaterThanOrEqual(0);
    }
    expect(depth).toBe(0);
    expect(condition).toContain("SubOperationMatches{'Blob.List'}");
    // The patterns each attribute is compared with (the condition language's StringLike: '*' matches any run).
    const patternsOf = (attribute: string) => [...condition.matchAll(new RegExp(`${attribute.replace(/[[\]/.]/g, "\\$&")}\\] StringLike '([^']*)'`, "g"))].map((m) => m[1]);
    const like = (value: string, pattern: string) =>
      new RegExp(
        `^${pattern
          .split("*")
          .map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"))
          .join(".*")}$`,
      ).test(value);
    const paths = patternsOf("@Resource[Microsoft.Storage/storageAccounts/blobServices/containers/blobs:path");
    const prefixes = patternsOf("@Request[Microsoft.Storage/storageAccounts/blobServices/containers/blobs:prefix");
    expect(paths).toEqual(["federations/*/rounds/*/global/*", "code/*"]);
    const mayRead = (path: string) => paths.some((p) => like(path, p));
    const mayList = (prefix: string) => prefixes.some((p) => like(prefix, p));
    expect(mayRead("federations/f1/rounds/3/global/model.safetensors")).toBe(true);
    expect(mayRead("federations/f1/rounds/3/updates/silo-a/model.safetensors")).toBe(false);
    expect(mayRead("federations/f1/manifest.json")).toBe(false);
    expect(["federations/f1/rounds/3/global", "federations/f1/rounds/3/global/", "federations/f1/rounds/3/global/model"].map(mayList)).toEqual([true, true, true]);
    expect(["federations/f1/rounds/3/globalx", "federations/f1/rounds/3/", "federations/f1/rounds/3/updates", "federations/f1/", ""].map(mayList)).toEqual([false, false, false, false, false]);
    // The job's code version points at code/<sha256>/ (lib/compute/azureml/code.ts): the job reads and lists it.
    const digest = "ab".repeat(32);
    expect([`code/${digest}/train.py`, `code/${digest}/lib/util.py`, `code/${digest}/.flo-code.json`].map(mayRead)).toEqual([true, true, true]);
    expect(["code", "code/", `code/${digest}`, `code/${digest}/`].map(mayList)).toEqual([true, true, true, true]);
    expect(["codex/a", "federations/f1/code/a", "checkpoints/code/a"].map(mayRead)).toEqual([false, false, false]);
    expect(["cod", "codex", "federations/f1/code"].map(mayList)).toEqual([false, false, false]);
  });

  test("generated names are valid: topic names without '_', event subscription names, nested deployment names <= 64", () => {
    const scopeFor = (f: BicepFile, values: Record<string, unknown>) => ({ file: f, files: byPath, values });
    // the name functions themselves
    expect(nameFunction("systemTopicName", "mlw_claims_2")).toBe("evgt-mlw-claims-2");
    expect(nameFunction("eventSubscriptionName", "flo_prod.eu")).toBe("flo-flo-prod-eu-job-events");
    const maxEnvironment = "e_".repeat(20);
    expect(literal(main, main.params.get("environmentName")!.decorators.find((d) => d.name === "maxLength")!.args[0])).toBe(maxEnvironment.length);
    expect(nameFunction("eventSubscriptionName", maxEnvironment)).toMatch(/^[A-Za-z0-9-]{3,64}$/);
    expect(nameFunction("systemTopicName", "a_".repeat(16) + "b")).toMatch(/^[A-Za-z0-9-]{3,128}$/);
    const exactly64 = "d".repeat(64);
    expect(nameFunction("deploymentName", exactly64)).toBe(exactly64);
    const long1 = nameFunction("deploymentName", "x".repeat(70)) as string;
    const long2 = nameFunction("deploymentName", "x".repeat(71)) as string;
    expect([long1.length, long2.length]).toEqual([64, 64]);
    expect(long1).not.toBe(long2);
    expect(long1.startsWith("x".repeat(50) + "-")).toBe(true);

    // every module of the entry points: a short literal name, or one built by deploymentName(), valid for long inputs
    const longSilo = { name: "s".repeat(63), workspace: "w_".repeat(16), subscriptionId: "sub", resourceGroup: "rg" };
    const longPartner = { name: "p".repeat(60), principalId: "id" };
    const longOwner = { workspace: "o_".repeat(16) + "o", subscriptionId: "sub", resourceGroup: "rg" };
    for (const entry of [main, siloEntry]) {
      for (const m of entry.modules) {
        const name = propNode(m, "name")!;
        const where = `${entry.name} module ${m.symbol}`;
        if (name.type === "string") {
          expect({ where, literal: literal(entry, name) }).toEqual({ where, literal: expect.stringMatching(/^[A-Za-z0-9_.()-]{1,64}$/) });
        } else {
          expect({ where, call: name.type === "call_expression" ? name.childForFieldName("function")!.text : name.type }).toEqual({ where, call: "deploymentName" });
          const value = evaluate(name, scopeFor(entry, { silo: longSilo, partner: longPartner, owner: longOwner }));
          expect({ where, value }).toEqual({ where, value: expect.stringMatching(/^[A-Za-z0-9_.()-]{1,64}$/) });
        }
      }
    }
    // the topic and subscription names come from the sanitizers wherever they are made
    expect(expr(propNode(moduleOf(main, "siloEventTopics"), "params.systemTopicName"))).toBe("systemTopicName(silo.workspace)");
    const generatedNames = [main, siloEntry].flatMap((f) =>
      f.root
        .descendantsOfType("string")
        .filter((s) => /^'(evgt-|flo-\$\{)/.test(s.text))
        .map((s) => location(f, s)),
    );
    expect(generatedNames).toEqual([]);
  });

  test("docs/deploy.md's silo.bicep command passes exactly silo.bicep's params, required ones included", () => {
    const md = readFileSync(join(ROOT, "docs", "deploy.md"), "utf8");
    const command = /az deployment group create[^`]*?-f infra\/silo\.bicep([\s\S]*?)--query/.exec(md);
    expect(command).not.toBeNull();
    const passed = [...command![1].matchAll(/(\w+)=/g)].map((m) => m[1]);
    expect(passed.filter((p) => !siloEntry.params.has(p))).toEqual([]);
    expect([...siloEntry.params.values()].filter((p) => !p.optional && !passed.includes(p.name)).map((p) => p.name)).toEqual([]);
    // the silo entry fields deploy.md tells the orchestrator admin to set exist in main.bicep's siloConfig type
    const siloConfig = main.types.get("siloConfig")!.value;
    for (const field of ["selfManaged", "eventTopicPrincipalId", "eventTopicName", "computePrincipalId"])
      expect({ field, declared: propNode(siloConfig, field) !== undefined }).toEqual({ field, declared: true });
  });

  test("docs/security.md's narrowed Azure ML role can submit v2 jobs", () => {
    const md = readFileSync(join(ROOT, "docs", "security.md"), "utf8");
    const section = md.slice(md.indexOf("### Narrowing AzureML Data Scientist further"), md.indexOf("\n## ", md.indexOf("### Narrowing AzureML Data Scientist further")));
    const actions = [...section.matchAll(/`([a-zA-Z/*]+(?:\/[a-zA-Z*]+)*)`/g)].map((m) => m[1]);
    for (const needed of ["jobs/write", "jobs/cancel/action", "metadata/artifacts/write", "metadata/codes/*/write", "environments/build/action", "environments/readSecrets/action"]) {
      expect({ needed, listed: actions.includes(needed) }).toEqual({ needed, listed: true });
    }
  });

  test("azure.yaml points azd at infra/main.bicep and deploys this package as a Function App", () => {
    const azd = parseYaml(readFileSync(join(ROOT, "azure.yaml"), "utf8"));
    expect(azd.infra).toEqual({ provider: "bicep", path: "infra", module: "main" });
    expect(azd.services.api).toEqual({ project: ".", language: "ts", host: "function" });
    expect(expr(propNode(resourceOf(file("modules/functionapp.bicep"), "functionApp"), "tags"))).toBe("union(tags, { 'azd-service-name': 'api' })");
    const parameters = JSON.parse(readFileSync(join(INFRA, "main.parameters.json"), "utf8")).parameters;
    for (const key of Object.keys(parameters)) expect(main.params.has(key)).toBe(true);
    for (const [p, info] of main.params) if (!info.optional) expect({ p, given: parameters[p] !== undefined }).toEqual({ p, given: true });
  });
});
