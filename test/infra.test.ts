// Invariants of infra/ (Bicep) checked by a small tolerant reader of the Bicep text: no offline Bicep
// compiler exists on npm, so this parses declarations, module wiring and role assignments itself.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { parse as parseYaml } from "yaml";
import { FLO_APP_TAG_VALUE } from "../lib/events/azureMlEvents";
import { rejectedQueueName } from "../lib/federation/services";

const ROOT = join(__dirname, "..");
const INFRA = join(ROOT, "infra");

/* ------------------------------------------ tolerant reader ------------------------------------------ */

interface BicepFile {
  path: string;
  text: string; // comments removed
  code: string; // comments removed and string contents blanked (interpolations kept)
  params: Map<string, { hasDefault: boolean; line: string }>;
  vars: Map<string, string>;
  outputs: Set<string>;
  modules: ModuleRef[];
  resources: ResourceBlock[];
}

interface ModuleRef {
  symbol: string;
  target: string; // resolved path
  body: string;
  paramKeys: string[];
}

interface ResourceBlock {
  symbol: string;
  type: string;
  existing: boolean;
  body: string;
}

/** Removes // and /* *\/ comments outside strings ('...' and '''...'''). */
function stripComments(source: string): string {
  let out = "";
  let i = 0;
  while (i < source.length) {
    if (source.startsWith("'''", i)) {
      const end = source.indexOf("'''", i + 3);
      out += source.slice(i, end + 3);
      i = end + 3;
    } else if (source[i] === "'") {
      let j = i + 1;
      while (j < source.length && source[j] !== "'") j += source[j] === "\\" ? 2 : 1;
      out += source.slice(i, j + 1);
      i = j + 1;
    } else if (source.startsWith("//", i)) {
      while (i < source.length && source[i] !== "\n") i++;
    } else if (source.startsWith("/*", i)) {
      i = source.indexOf("*/", i + 2) + 2;
    } else {
      out += source[i++];
    }
  }
  return out;
}

/** Blanks string contents but keeps `${...}` interpolations, so identifier searches see only code. */
function blankStrings(text: string): string {
  return text.replace(/'''[\s\S]*?'''|'(?:\\.|[^'\\])*'/g, (literal) => {
    const interpolations = [...literal.matchAll(/\$\{([^}]*)\}/g)].map((m) => m[1]);
    return `'${interpolations.map((x) => ` ${x} `).join("")}'`;
  });
}

/** The text of the balanced {...} or [...] starting at `open`. */
function balanced(text: string, open: number): string {
  const opener = text[open];
  const closer = opener === "{" ? "}" : "]";
  let depth = 0;
  for (let i = open; i < text.length; i++) {
    if (text[i] === opener) depth++;
    else if (text[i] === closer && --depth === 0) return text.slice(open, i + 1);
  }
  throw new Error(`unbalanced ${opener} at ${open}`);
}

/** Keys at the first nesting level of an object literal `{ a: 1\n b: {...} }`. */
function topLevelKeys(objectText: string): string[] {
  const keys: string[] = [];
  let depth = 0;
  const lines = objectText.slice(1, -1).split("\n");
  for (const line of lines) {
    if (depth === 0) {
      for (const m of line.matchAll(/(?:^\s*|[{,]\s*)([A-Za-z_][A-Za-z0-9_]*)\s*:/g)) keys.push(m[1]);
    }
    for (const ch of line) {
      if (ch === "{" || ch === "[" || ch === "(") depth++;
      else if (ch === "}" || ch === "]" || ch === ")") depth--;
    }
  }
  return keys;
}

function readBicep(path: string): BicepFile {
  const text = stripComments(readFileSync(path, "utf8"));
  const code = blankStrings(text);
  const params = new Map<string, { hasDefault: boolean; line: string }>();
  for (const m of code.matchAll(/^param\s+([A-Za-z_]\w*)\s+([^\n=]+?)(\s*=.*)?$/gm)) {
    params.set(m[1], { hasDefault: m[3] !== undefined || /\?\s*$/.test(m[2].trim()), line: m[0] });
  }
  const vars = new Map<string, string>();
  for (const m of text.matchAll(/^var\s+([A-Za-z_]\w*)\s*=\s*(.+)$/gm)) vars.set(m[1], m[2].trim());
  const outputs = new Set<string>();
  for (const m of code.matchAll(/^output\s+([A-Za-z_]\w*)\s/gm)) outputs.add(m[1]);
  const modules: ModuleRef[] = [];
  for (const m of text.matchAll(/^module\s+([A-Za-z_]\w*)\s+'([^']+)'\s*=\s*(\[for[^:]*:\s*)?/gm)) {
    const start = text.indexOf("{", m.index + m[0].length - 1);
    const body = balanced(text, start);
    const paramsAt = body.search(/\bparams\s*:\s*\{/);
    const paramKeys = paramsAt < 0 ? [] : topLevelKeys(balanced(body, body.indexOf("{", paramsAt)));
    modules.push({ symbol: m[1], target: resolve(dirname(path), m[2]), body, paramKeys });
  }
  const resources: ResourceBlock[] = [];
  for (const m of text.matchAll(/^resource\s+([A-Za-z_]\w*)\s+'([^'@]+)@[^']+'\s+(existing\s+)?=\s*(\[for[^:]*:\s*)?/gm)) {
    const start = text.indexOf("{", m.index + m[0].length - 1);
    resources.push({ symbol: m[1], type: m[2], existing: Boolean(m[3]), body: balanced(text, start) });
  }
  return { path, text, code, params, vars, outputs, modules, resources };
}

function bicepFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? bicepFiles(join(dir, e.name)) : e.name.endsWith(".bicep") ? [join(dir, e.name)] : [],
  );
}

/* ----------------------------------------------- facts ----------------------------------------------- */

const files = bicepFiles(INFRA).map(readBicep);
const byPath = new Map(files.map((f) => [f.path, f]));
const main = byPath.get(join(INFRA, "main.bicep"))!;
const siloEntry = byPath.get(join(INFRA, "silo.bicep"))!;
const ENTRY_POINTS = new Set([main.path, siloEntry.path]);
const name = (f: BicepFile) => relative(ROOT, f.path);

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
};

interface RoleAssignment {
  file: string;
  symbol: string;
  roleId: string;
  scope: string | undefined;
  body: string;
}

function roleAssignments(): RoleAssignment[] {
  return files.flatMap((f) =>
    f.resources
      .filter((r) => r.type === "Microsoft.Authorization/roleAssignments" && !r.existing)
      .map((r) => {
        const ref = /roleDefinitionId:\s*subscriptionResourceId\('Microsoft\.Authorization\/roleDefinitions',\s*([^)]+)\)/.exec(r.body);
        if (!ref) throw new Error(`${name(f)} ${r.symbol}: roleDefinitionId is not subscriptionResourceId('Microsoft.Authorization/roleDefinitions', <id>)`);
        const arg = ref[1].trim();
        const literal = /^'([0-9a-f-]{36})'$/.exec(arg)?.[1] ?? /^'([0-9a-f-]{36})'$/.exec(f.vars.get(arg) ?? "")?.[1];
        if (!literal) throw new Error(`${name(f)} ${r.symbol}: role id ${arg} is not a GUID literal or a var holding one`);
        return { file: name(f), symbol: r.symbol, roleId: literal, scope: /^\s*scope:\s*(\w+)/m.exec(r.body)?.[1], body: r.body };
      }),
  );
}

/** Rows of the docs/security.md role table: `| identity | scope | role (guid) | why |`. */
function securityTable(): { identity: string; scope: string; role: string; why: string }[] {
  const md = readFileSync(join(ROOT, "docs", "security.md"), "utf8");
  return md
    .split("\n")
    .filter((l) => /^\|.*\|\s*$/.test(l) && /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/.test(l))
    .map((l) => {
      const [identity, scope, role, why] = l.split("|").slice(1, -1).map((c) => c.trim());
      return { identity, scope, role, why };
    });
}

/* ----------------------------------------------- tests ----------------------------------------------- */

describe("infra/ Bicep", () => {
  test("the reader sees the whole template (sanity: it would catch a missing module)", () => {
    expect(files.length).toBeGreaterThanOrEqual(10);
    expect(main.modules.map((m) => m.symbol)).toEqual(expect.arrayContaining(["monitoring", "storage", "serviceBus", "functionApp", "appRoles", "siloEventTopics", "siloEventSubscriptions", "siloModelReaders"]));
    expect(roleAssignments().length).toBe(15);
  });

  test("every declared param is used in its file", () => {
    const unused: string[] = [];
    for (const f of files) {
      const withoutDeclarations = f.code.replace(/^param\s.*$/gm, "");
      for (const p of f.params.keys()) if (!new RegExp(`\\b${p}\\b`).test(withoutDeclarations)) unused.push(`${name(f)}: ${p}`);
    }
    expect(unused).toEqual([]);
  });

  test("every module file exists, every module gets exactly its params (required ones included), every module file is used", () => {
    const problems: string[] = [];
    const referenced = new Set<string>();
    for (const f of files) {
      for (const m of f.modules) {
        referenced.add(m.target);
        const target = byPath.get(m.target);
        if (!existsSync(m.target) || !target) {
          problems.push(`${name(f)}: module ${m.symbol} -> missing file ${relative(ROOT, m.target)}`);
          continue;
        }
        for (const key of m.paramKeys) if (!target.params.has(key)) problems.push(`${name(f)}: module ${m.symbol} passes unknown param ${key}`);
        for (const [p, info] of target.params) if (!info.hasDefault && !m.paramKeys.includes(p)) problems.push(`${name(f)}: module ${m.symbol} misses required param ${p}`);
        for (const out of m.body.matchAll(/(\w+)(?:\[\w+\])?\.outputs\.(\w+)/g)) {
          const source = f.modules.find((x) => x.symbol === out[1]);
          if (source && !byPath.get(source.target)?.outputs.has(out[2])) problems.push(`${name(f)}: ${out[1]}.outputs.${out[2]} is not an output of ${relative(ROOT, source.target)}`);
        }
      }
    }
    for (const f of files) if (!ENTRY_POINTS.has(f.path) && !referenced.has(f.path)) problems.push(`${name(f)} is not referenced by any module`);
    expect(problems).toEqual([]);
  });

  test("module outputs used anywhere exist (main.bicep, silo.bicep)", () => {
    const missing: string[] = [];
    for (const entry of [main, siloEntry]) for (const m of entry.text.matchAll(/(\w+)(?:\[\w+\])?\.outputs\.(\w+)/g)) {
      const mod = entry.modules.find((x) => x.symbol === m[1]);
      if (!mod) missing.push(`${m[1]} is not a module`);
      else if (!byPath.get(mod.target)!.outputs.has(m[2])) missing.push(`${m[1]}.outputs.${m[2]}`);
    }
    expect(missing).toEqual([]);
  });

  test("no keys, connection strings or secrets; local auth disabled everywhere", () => {
    const forbidden: [RegExp, string][] = [
      [/listKeys\s*\(/i, "listKeys("],
      [/listConnectionStrings|listAuthKeys|listSecrets/i, "list*Secrets/ConnectionStrings"],
      [/AccountKey=|SharedAccessKey|SharedAccessSignature|DefaultEndpointsProtocol=/i, "a connection string"],
      [/allowSharedKeyAccess:\s*true/, "allowSharedKeyAccess: true"],
      [/disableLocalAuth:\s*false/i, "disableLocalAuth: false"],
      [/allowBlobPublicAccess:\s*true/, "allowBlobPublicAccess: true"],
      [/@secure\(\)/, "@secure() (nothing here is a secret)"],
      [/FUNCTIONS_WORKER_RUNTIME|FUNCTIONS_EXTENSION_VERSION/, "settings Flex Consumption rejects"],
    ];
    const hits = files.flatMap((f) => forbidden.filter(([re]) => re.test(f.text)).map(([, what]) => `${name(f)}: ${what}`));
    expect(hits).toEqual([]);
    const storage = readBicep(join(INFRA, "modules", "storage.bicep")).text;
    expect(storage).toMatch(/allowSharedKeyAccess:\s*false/);
    expect(storage).toMatch(/allowBlobPublicAccess:\s*false/);
    expect(storage).toMatch(/minimumTlsVersion:\s*'TLS1_2'/);
    expect(readBicep(join(INFRA, "modules", "servicebus.bicep")).text).toMatch(/disableLocalAuth:\s*true/);
    expect(readBicep(join(INFRA, "modules", "monitoring.bicep")).text).toMatch(/DisableLocalAuth:\s*true/);
  });

  test("Function App: Flex Consumption, Node 20, system identity, identity-based storage/Service Bus/App Insights settings", () => {
    const app = readBicep(join(INFRA, "modules", "functionapp.bicep")).text;
    expect(app).toMatch(/sku:\s*\{\s*name:\s*'FC1',\s*tier:\s*'FlexConsumption'\s*\}/);
    expect(app).toMatch(/runtime:\s*\{\s*name:\s*'node',\s*version:\s*'20'\s*\}/);
    expect(app).toMatch(/identity:\s*\{\s*type:\s*'SystemAssigned'\s*\}/);
    expect(app).toMatch(/authentication:\s*\{\s*type:\s*'SystemAssignedIdentity'\s*\}/);
    const settings = Object.fromEntries([...app.matchAll(/\{\s*name:\s*'([^']+)',\s*value:\s*([^}]+?)\s*\}/g)].map((m) => [m[1], m[2]]));
    expect(settings).toMatchObject({
      AzureWebJobsStorage__accountName: "storageAccountName",
      AzureWebJobsStorage__blobServiceUri: "blobEndpoint",
      AzureWebJobsStorage__queueServiceUri: "queueEndpoint",
      AzureWebJobsStorage__tableServiceUri: "tableEndpoint",
      APPLICATIONINSIGHTS_AUTHENTICATION_STRING: "'Authorization=AAD'",
      ServiceBusConnection__fullyQualifiedNamespace: "serviceBusFullyQualifiedNamespace",
      FLO_JOB_EVENTS_QUEUE: "jobEventsQueueName",
      FLO_PARTNER_QUEUE: "partnerCommandsQueueName",
      FLO_NOTIFICATIONS_TOPIC: "notificationsTopicName",
      FLO_MODEL_CONTAINER: "modelContainerName",
    });
    expect(Object.keys(settings).filter((k) => k === "AzureWebJobsStorage" || k === "ServiceBusConnection")).toEqual([]);
  });

  test("the app settings the Bicep sets are the ones the app reads (local.settings.sample.json), and every Azure-relevant one is set", () => {
    const app = readBicep(join(INFRA, "modules", "functionapp.bicep")).text;
    const bicepSettings = new Set([...app.matchAll(/\{\s*name:\s*'([^']+)',\s*value:/g)].map((m) => m[1]));
    const sample = Object.keys(JSON.parse(readFileSync(join(ROOT, "local.settings.sample.json"), "utf8")).Values as Record<string, string>).filter((k) => !k.endsWith("__comment"));
    // Local-only, or overrides for tests and sovereign clouds; the Function App never needs them.
    const notInAzure = [
      "FUNCTIONS_WORKER_RUNTIME", // Flex Consumption takes the runtime from functionAppConfig.runtime
      "AzureWebJobsStorage", // identity-based AzureWebJobsStorage__* instead
      "ServiceBusConnection", // identity-based ServiceBusConnection__* instead
      "FLO_LOCAL_JOBS_DIR",
      "FLO_LOCAL_BASE_DIR",
      "FLO_MANAGED_IDENTITY_CLIENT_ID", // the app has a system-assigned identity
      "FLO_ARM_ENDPOINT",
      "FLO_ARM_CA_FILE",
      "FLO_AZUREML_BLOB_ENDPOINT",
      "FLO_AZUREML_CODE_ID", // optional: specs name their code asset (azureml:<name>:<version>)
      "FLO_AZUREML_API_VERSION",
    ];
    expect(sample.filter((k) => !notInAzure.includes(k) && !bicepSettings.has(k))).toEqual([]);
    // No FLO_ setting in the Bicep that the app does not know (a typo would be silently ignored).
    expect([...bicepSettings].filter((k) => k.startsWith("FLO_") && !sample.includes(k))).toEqual([]);
    expect(notInAzure.filter((k) => !sample.includes(k))).toEqual([]);
    const settingValue = (name: string) => new RegExp(`\\{\\s*name:\\s*'${name}',\\s*value:\\s*([^}]+?)\\s*\\}`).exec(app)![1];
    expect(settingValue("FLO_PARTNER_ALLOWLIST")).toBe("partnerAllowList");
    expect(main.modules.find((m) => m.symbol === "functionApp")!.body).toMatch(/partnerAllowList:\s*join\(map\(partners, partner => partner\.name\), ','\)/);
  });

  test("Service Bus entities: duplicate detection + dead-lettering on the queues, duplicate detection on the topic, one subscription per partner", () => {
    const sb = readBicep(join(INFRA, "modules", "servicebus.bicep"));
    const block = (symbol: string) => sb.resources.find((r) => r.symbol === symbol)!.body;
    for (const q of ["jobEventsQueue", "partnerCommandsQueue"]) {
      expect(block(q)).toMatch(/requiresDuplicateDetection:\s*true/);
      expect(block(q)).toMatch(/deadLetteringOnMessageExpiration:\s*true/);
      expect(block(q)).toMatch(/maxDeliveryCount:\s*maxDeliveryCount/);
    }
    expect(block("notificationsTopic")).toMatch(/requiresDuplicateDetection:\s*true/);
    // The queues the app sends rejected messages to (rejectMessage), named as the app names them.
    const rejected = block("rejectedQueues");
    expect(sb.text).toMatch(/resource rejectedQueues '[^']+' = \[for queueName in \[jobEventsQueueName, partnerCommandsQueueName\]:/);
    expect(/name:\s*'([^']+)'/.exec(rejected)![1].replace("${queueName}", "q")).toBe(rejectedQueueName("q"));
    expect(rejected).toMatch(/requiresDuplicateDetection:\s*true/);
    expect(sb.text).toMatch(/output jobEventsRejectedQueueName string = rejectedQueues\[0\]\.name/);
    expect(sb.text).toMatch(/output partnerCommandsRejectedQueueName string = rejectedQueues\[1\]\.name/);
    expect(sb.text).toMatch(/\[for partner in partnerNames:/);
    expect(main.text).toMatch(/partnerNames:\s*map\(partners, partner => partner\.name\)/);
    // partners without an identity get a subscription but no role
    expect(main.text).toMatch(/^module partnerRoles '[^']+' = \[for partner in partners: if \(!empty\(partner\.\?principalId \?\? ''\)\) \{/m);
  });

  test("Event Grid: per silo a system topic in the silo's RG, RunStatusChanged/RunCompleted filtered on data.RunTags.floApp, delivered with the topic's identity", () => {
    const sub = readBicep(join(INFRA, "modules", "silo-event-subscription.bicep")).text;
    expect(sub).toContain("'Microsoft.MachineLearningServices.RunStatusChanged'");
    expect(sub).toContain("'Microsoft.MachineLearningServices.RunCompleted'");
    expect(sub).toMatch(/operatorType:\s*'StringIn'\s*key:\s*'data\.RunTags\.floApp'\s*values:\s*\[\s*floAppTagValue\s*\]/);
    expect(sub).toMatch(/deliveryWithResourceIdentity:\s*\{\s*identity:\s*\{\s*type:\s*'SystemAssigned'\s*\}/);
    expect(sub).toMatch(/endpointType:\s*'ServiceBusQueue'/);
    expect(sub).not.toMatch(/\bdestination:\s*\{[^}]*endpointType[\s\S]*\bdestination:/); // only the identity-based destination
    expect(readBicep(join(INFRA, "modules", "silo-event-topic.bicep")).text).toMatch(/topicType:\s*'Microsoft\.MachineLearningServices\.Workspaces'/);
    // the advanced filter's value is the tag value lib/events puts on jobs
    expect(main.params.get("floAppTagValue")!.line).toContain("=");
    expect(/^param floAppTagValue string = '([^']*)'/m.exec(main.text)![1]).toBe(FLO_APP_TAG_VALUE);
    // silo modules run in the silo's subscription/RG; the sender role is granted before the subscription is created
    const scopeOf = (symbol: string) => /scope:\s*([^\n]+)/.exec(main.modules.find((m) => m.symbol === symbol)!.body)![1].trim();
    expect(scopeOf("siloEventTopics")).toBe("resourceGroup(silo.subscriptionId, silo.resourceGroup)");
    expect(scopeOf("siloEventSubscriptions")).toBe("resourceGroup(silo.subscriptionId, silo.resourceGroup)");
    expect(scopeOf("siloWorkspaceAccess")).toBe("resourceGroup(silo.subscriptionId, silo.resourceGroup)");
    expect(scopeOf("siloEventSenderRoles")).toBe("rg");
    expect(scopeOf("siloModelReaders")).toBe("rg");
    expect(main.modules.find((m) => m.symbol === "siloEventSubscriptions")!.body).toMatch(/dependsOn:\s*\[\s*siloEventSenderRoles\[i\]\s*\]/);
  });

  test("role assignments: narrow scopes, only roles in the docs/security.md table, none broader", () => {
    const assignments = roleAssignments();
    const allowed = new Set(Object.values(ROLE));
    for (const a of assignments) {
      expect({ where: `${a.file} ${a.symbol}`, broad: TOO_BROAD[a.roleId] }).toEqual({ where: `${a.file} ${a.symbol}`, broad: undefined });
      expect(allowed.has(a.roleId)).toBe(true);
      // Scoped to one resource, never the resource group or subscription; managed identities only.
      expect({ where: `${a.file} ${a.symbol}`, scope: a.scope }).toEqual({ where: `${a.file} ${a.symbol}`, scope: expect.stringMatching(/^\w+$/) });
      expect(a.body).toMatch(/principalType:\s*'ServicePrincipal'/);
      expect(a.body).toMatch(/name:\s*guid\(/);
    }
    const allText = files.map((f) => f.text).join("\n");
    for (const [id, role] of Object.entries(TOO_BROAD)) expect({ role, present: allText.includes(id) }).toEqual({ role, present: false });

    const table = securityTable();
    const documented = new Set(table.flatMap((row) => row.role.match(/[0-9a-f]{8}-[0-9a-f-]{27}/g) ?? []));
    for (const a of assignments) expect({ where: `${a.file} ${a.symbol}`, documented: documented.has(a.roleId) }).toEqual({ where: `${a.file} ${a.symbol}`, documented: true });
    for (const row of table) expect(row.why.length).toBeGreaterThan(20);
    // each documented role is actually assigned (the table does not promise more than the template does)
    for (const id of documented) expect(assignments.some((a) => a.roleId === id)).toBe(true);
  });

  test("exactly the intended grants: who gets what, where", () => {
    const summary = roleAssignments()
      .map((a) => `${a.file.replace("infra/modules/", "")} ${a.scope} ${Object.entries(ROLE).find(([, id]) => id === a.roleId)![0]}`)
      .sort();
    expect(summary).toEqual([
      "app-roles.bicep applicationInsights monitoringMetricsPublisher",
      "app-roles.bicep jobEventsQueue serviceBusDataReceiver",
      "app-roles.bicep jobEventsRejectedQueue serviceBusDataSender",
      "app-roles.bicep notificationsTopic serviceBusDataSender",
      "app-roles.bicep partnerCommandsQueue serviceBusDataReceiver",
      "app-roles.bicep partnerCommandsRejectedQueue serviceBusDataSender",
      "app-roles.bicep storage storageBlobDataContributor",
      "app-roles.bicep storage storageQueueDataContributor",
      "app-roles.bicep storage storageTableDataContributor",
      "event-sender-role.bicep jobEventsQueue serviceBusDataSender",
      "partner-roles.bicep partnerCommandsQueue serviceBusDataSender",
      "partner-roles.bicep partnerSubscription serviceBusDataReceiver",
      "silo-exchange-reader.bicep exchangeContainer storageBlobDataReader",
      "silo-model-reader.bicep modelContainer storageBlobDataReader",
      "silo-workspace-access.bicep workspace azureMlDataScientist",
    ].sort());
  });

  test("silo compute reads only global models: ABAC condition on the model container, balanced and path-limited", () => {
    const reader = readBicep(join(INFRA, "modules", "silo-model-reader.bicep"));
    const block = reader.resources.find((r) => r.type === "Microsoft.Authorization/roleAssignments")!.body;
    expect(block).toMatch(/condition:\s*onlyGlobalModels/);
    expect(block).toMatch(/conditionVersion:\s*'2\.0'/);
    const condition = reader.vars.get("onlyGlobalModels")!;
    let depth = 0;
    for (const ch of condition) {
      if (ch === "(") depth++;
      if (ch === ")") depth--;
      expect(depth).toBeGreaterThanOrEqual(0);
    }
    expect(depth).toBe(0);
    expect(reader.vars.get("globalModels")).toBe("'federations/*/rounds/*/global/*'");
    expect(condition).toContain("SubOperationMatches{\\'Blob.List\\'}");
    expect(condition).toContain("blobs:prefix] StringLike");
    expect(condition).toContain("blobs:path] StringLike");
  });

  test("infra/silo.bicep (silo admin's own deployment) deploys the same silo-side modules as main.bicep, event subscription in step 2", () => {
    const siloSide = ["silo-event-topic.bicep", "silo-workspace-access.bicep", "silo-exchange-reader.bicep", "silo-event-subscription.bicep"].map((f) => join(INFRA, "modules", f));
    expect(siloEntry.modules.map((m) => m.target).sort()).toEqual([...siloSide].sort());
    for (const target of siloSide) expect(main.modules.some((m) => m.target === target)).toBe(true);
    expect(siloEntry.text).toMatch(/^targetScope = 'resourceGroup'/m);
    expect(siloEntry.text).toMatch(/module eventSubscription '[^']+' = if \(createEventSubscription\)/);
    expect(/^param floAppTagValue string = '([^']*)'/m.exec(siloEntry.text)![1]).toBe(FLO_APP_TAG_VALUE);
    // main.bicep skips the silo-side modules for selfManaged silos but always makes the orchestrator-side grants
    for (const symbol of ["siloEventTopics", "siloEventSubscriptions", "siloWorkspaceAccess", "siloExchangeReaders"]) {
      expect(main.text).toMatch(new RegExp(`^module ${symbol} '[^']+' = \\[for [^:]+: if \\(!\\(silo\\.\\?selfManaged \\?\\? false\\)\\) \\{`, "m"));
    }
    expect(main.text).toMatch(/^module siloModelReaders '[^']+' = \[for silo in silos: \{/m);
  });

  test("azure.yaml points azd at infra/main.bicep and deploys this package as a Function App", () => {
    const azd = parseYaml(readFileSync(join(ROOT, "azure.yaml"), "utf8"));
    expect(azd.infra).toEqual({ provider: "bicep", path: "infra", module: "main" });
    expect(azd.services.api).toEqual({ project: ".", language: "ts", host: "function" });
    expect(readBicep(join(INFRA, "modules", "functionapp.bicep")).text).toContain("'azd-service-name': 'api'");
    const parameters = JSON.parse(readFileSync(join(INFRA, "main.parameters.json"), "utf8")).parameters;
    for (const key of Object.keys(parameters)) expect(main.params.has(key)).toBe(true);
    for (const [p, info] of main.params) if (!info.hasDefault) expect(parameters[p]).toBeDefined();
  });
});
