// flo on Azure: the orchestrator (Function App on Flex Consumption, storage, Application Insights,
// Service Bus) in its own resource group, plus per silo the Event Grid wiring and the role assignments
// that silo grants (or receives). Identities only: no keys, connection strings or secrets anywhere.
// `azd up` deploys it (azure.yaml); docs/deploy.md explains the parameters and silo registration.
targetScope = 'subscription'

import { deploymentName, eventSubscriptionName, systemTopicName } from 'names.bicep'

@minLength(1)
@maxLength(40)
@description('azd environment name; names and tags every resource.')
param environmentName string

@minLength(1)
@description('Region of the orchestrator resources (must offer Flex Consumption).')
param location string

@description('Orchestrator resource group; default rg-<environmentName>.')
param resourceGroupName string = ''

@description('One silo: where its Azure ML workspace and exchange container are, and who its compute runs as.')
type siloConfig = {
  @description('Silo name as in federation specs ([a-z0-9-]).')
  name: string
  subscriptionId: string
  @description('Resource group of the silo workspace (the Event Grid system topic is created there).')
  resourceGroup: string
  workspace: string
  @description('Storage account holding the exchange container the silo jobs write model updates to.')
  exchangeStorageAccount: string
  exchangeContainer: string
  @description('Resource group of the exchange storage account; default: resourceGroup.')
  exchangeResourceGroup: string?
  @description('Object (principal) id of the identity the silo compute runs jobs as; it reads global models.')
  computePrincipalId: string
  @description('true when the silo admin deploys infra/silo.bicep in the silo themselves (this deployment then makes the orchestrator-side grants and the event subscription only).')
  selfManaged: bool?
  @description('selfManaged silos: principal id of their Event Grid system topic (output eventTopicPrincipalId of infra/silo.bicep). Until it is set, the silo gets no event wiring.')
  eventTopicPrincipalId: string?
  @description('selfManaged silos: name of their system topic (output eventTopicName of infra/silo.bicep); default evgt-<workspace with \'_\' as \'-\'>.')
  eventTopicName: string?
}

@description('Registered silos; they must be in this deployment\'s Entra tenant.')
param silos siloConfig[] = []

@description('A partner: its notifications subscription name and, when it has an Entra identity (service principal or managed identity) in this tenant, that identity\'s object id.')
type partnerConfig = {
  @description('Subscription name on the notifications topic ([A-Za-z0-9-]).')
  name: string
  @description('Object id that may send to its own queue partner-<name> and receive from its subscription.')
  principalId: string?
}

param partners partnerConfig[] = []

@description('A federation owner\'s Azure ML workspace where specs\' `registration` sections register delivered models (never a silo\'s).')
type registrationWorkspaceConfig = {
  subscriptionId: string
  resourceGroup: string
  workspace: string
}

@description('Workspaces flo may register models in (the owners\' workspaces named by specs\' registration.workspace).')
param registrationWorkspaces registrationWorkspaceConfig[] = []

param jobEventsQueueName string = 'job-events'
param notificationsTopicName string = 'notifications'
@description('Container of global models, silo updates and manifests (FLO_MODEL_CONTAINER).')
param modelContainerName string = 'flo'
param maxDeliveryCount int = 10
@description('Event Grid retries an event for at most this long; the duplicate-detection window covers it.')
param eventTimeToLiveInMinutes int = 1440
param maximumInstanceCount int = 40
@allowed([ 512, 2048, 4096 ])
param instanceMemoryMB int = 2048
@description('Value of the floApp tag on flo jobs (lib/compute/siloCompute.ts FLO_APP_TAG_VALUE).')
param floAppTagValue string = 'flo'
@description('FLO_SPEC_REGISTRY: absolute folder of registered specs (<name>.yaml/.json) in the deployed package, e.g. /home/site/wwwroot/specs. Empty: partners cannot start federations by name.')
param specRegistry string = ''
@description('FLO_RETRAIN_SPEC: spec file for scheduled retraining (set together with retrainSchedule; both empty: no schedule).')
param retrainSpec string = ''
@description('FLO_RETRAIN_SCHEDULE: six-field NCRONTAB of scheduled retraining, e.g. 0 0 2 * * 1.')
param retrainSchedule string = ''
@description('Durable task hub name: must equal host.json extensions.durableTask.hubName (its containers are pre-created and granted one by one).')
param taskHubName string = 'flo'
@description('Optional Entra ID front for the HTTP API (App Service authentication): the client id of an app registration in this tenant. Empty: function keys only.')
param apiEntraClientId string = ''
@description('Audiences the Entra front accepts (default: api://<apiEntraClientId>).')
param apiEntraAllowedAudiences array = []

var tags = { 'azd-env-name': environmentName, app: 'flo' }
// Resources created inside silo resource groups are labelled but not claimed by azd (azd down leaves silos alone).
var siloTags = { app: 'flo', 'flo-orchestrator': environmentName }
var token = toLower(uniqueString(subscription().id, environmentName, location))
var rgName = empty(resourceGroupName) ? 'rg-${environmentName}' : resourceGroupName
var duplicateDetectionWindow = 'PT${eventTimeToLiveInMinutes}M'

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: rgName
  location: location
  tags: tags
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    location: location
    tags: tags
    logAnalyticsName: 'log-${token}'
    applicationInsightsName: 'appi-${token}'
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    location: location
    tags: tags
    storageAccountName: 'st${token}'
    deploymentContainerName: 'app-package'
    modelContainerName: modelContainerName
    taskHubName: taskHubName
  }
}

module serviceBus 'modules/servicebus.bicep' = {
  name: 'servicebus'
  scope: rg
  params: {
    location: location
    tags: tags
    namespaceName: 'sb-${token}'
    jobEventsQueueName: jobEventsQueueName
    notificationsTopicName: notificationsTopicName
    maxDeliveryCount: maxDeliveryCount
    duplicateDetectionWindow: duplicateDetectionWindow
    partnerNames: map(partners, partner => partner.name)
  }
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'functionapp'
  scope: rg
  params: {
    location: location
    tags: tags
    planName: 'plan-${token}'
    functionAppName: 'func-${token}'
    storageAccountName: storage.outputs.storageAccountName
    blobEndpoint: storage.outputs.blobEndpoint
    queueEndpoint: storage.outputs.queueEndpoint
    tableEndpoint: storage.outputs.tableEndpoint
    deploymentContainerName: storage.outputs.deploymentContainerName
    modelContainerName: storage.outputs.modelContainerName
    applicationInsightsConnectionString: monitoring.outputs.applicationInsightsConnectionString
    serviceBusFullyQualifiedNamespace: serviceBus.outputs.fullyQualifiedNamespace
    jobEventsQueueName: serviceBus.outputs.jobEventsQueueName
    notificationsTopicName: serviceBus.outputs.notificationsTopicName
    // Partners with a subscription are the ones allowed to send commands (FLO_PARTNER_ALLOWLIST); the
    // app listens to partner-<name> (names.bicep partnerQueueName) for each.
    partnerAllowList: join(map(partners, partner => partner.name), ',')
    specRegistry: specRegistry
    retrainSpec: retrainSpec
    retrainSchedule: retrainSchedule
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
    apiEntraClientId: apiEntraClientId
    apiEntraAllowedAudiences: apiEntraAllowedAudiences
  }
}

module appRoles 'modules/app-roles.bicep' = {
  name: 'app-roles'
  scope: rg
  params: {
    principalId: functionApp.outputs.principalId
    storageAccountName: storage.outputs.storageAccountName
    writableContainerNames: concat([storage.outputs.modelContainerName], storage.outputs.hostContainerNames)
    deploymentContainerName: storage.outputs.deploymentContainerName
    serviceBusNamespaceName: serviceBus.outputs.namespaceName
    jobEventsQueueName: serviceBus.outputs.jobEventsQueueName
    jobEventsRejectedQueueName: serviceBus.outputs.jobEventsRejectedQueueName
    partnerQueueNames: serviceBus.outputs.partnerQueueNames
    partnerRejectedQueueNames: serviceBus.outputs.partnerRejectedQueueNames
    notificationsTopicName: serviceBus.outputs.notificationsTopicName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
  }
}

module partnerRoles 'modules/partner-roles.bicep' = [for (partner, i) in partners: if (!empty(partner.?principalId ?? '')) {
  name: deploymentName('partner-${partner.name}-roles')
  scope: rg
  params: {
    principalId: partner.?principalId ?? ''
    serviceBusNamespaceName: serviceBus.outputs.namespaceName
    partnerQueueName: serviceBus.outputs.partnerQueueNames[i]
    notificationsTopicName: serviceBus.outputs.notificationsTopicName
    subscriptionName: partner.name
  }
}]

// ---- per silo -------------------------------------------------------------------------------------
// Silo-side resources (system topic, grants on the workspace and exchange container) are deployed
// into the silo's resource group from here when the deployer may do so, or by the silo admin with
// infra/silo.bicep (`selfManaged: true`). The orchestrator-side grants (event topic -> job-events
// queue, silo compute -> global models) and the event subscription are always made here: creating
// a subscription that delivers to the job-events queue needs write access to that queue, which only
// the orchestrator side has (a selfManaged silo grants the deployer just enough for it, see
// modules/silo-deployer-access.bicep).

module siloEventTopics 'modules/silo-event-topic.bicep' = [for silo in silos: if (!(silo.?selfManaged ?? false)) {
  name: deploymentName('silo-${silo.name}-event-topic')
  scope: resourceGroup(silo.subscriptionId, silo.resourceGroup)
  params: {
    systemTopicName: systemTopicName(silo.workspace)
    workspaceName: silo.workspace
    tags: siloTags
  }
}]

// A selfManaged silo gets its sender role once its topic's principal id is known (output of its
// infra/silo.bicep). The else branches below are parenthesized so that every Bicep parser, the tests'
// tree-sitter grammar included, binds `[i]` to the module and not to the whole conditional.
module siloEventSenderRoles 'modules/event-sender-role.bicep' = [for (silo, i) in silos: if (!(silo.?selfManaged ?? false) || !empty(silo.?eventTopicPrincipalId ?? '')) {
  name: deploymentName('silo-${silo.name}-event-sender')
  scope: rg
  params: {
    principalId: (silo.?selfManaged ?? false) ? silo.?eventTopicPrincipalId ?? '' : (siloEventTopics[i].outputs.principalId)
    serviceBusNamespaceName: serviceBus.outputs.namespaceName
    jobEventsQueueName: serviceBus.outputs.jobEventsQueueName
  }
}]

// Every silo whose topic identity is known (the same condition as its sender role above).
module siloEventSubscriptions 'modules/silo-event-subscription.bicep' = [for (silo, i) in silos: if (!(silo.?selfManaged ?? false) || !empty(silo.?eventTopicPrincipalId ?? '')) {
  name: deploymentName('silo-${silo.name}-event-subscription')
  scope: resourceGroup(silo.subscriptionId, silo.resourceGroup)
  dependsOn: [ siloEventSenderRoles[i] ]
  params: {
    systemTopicName: (silo.?selfManaged ?? false) ? silo.?eventTopicName ?? systemTopicName(silo.workspace) : (siloEventTopics[i].outputs.systemTopicName)
    eventSubscriptionName: eventSubscriptionName(environmentName)
    jobEventsQueueId: serviceBus.outputs.jobEventsQueueId
    floAppTagValue: floAppTagValue
    eventTimeToLiveInMinutes: eventTimeToLiveInMinutes
  }
}]

module siloWorkspaceAccess 'modules/silo-workspace-access.bicep' = [for silo in silos: if (!(silo.?selfManaged ?? false)) {
  name: deploymentName('silo-${silo.name}-workspace-access')
  scope: resourceGroup(silo.subscriptionId, silo.resourceGroup)
  params: {
    principalId: functionApp.outputs.principalId
    workspaceName: silo.workspace
  }
}]

module siloExchangeReaders 'modules/silo-exchange-reader.bicep' = [for silo in silos: if (!(silo.?selfManaged ?? false)) {
  name: deploymentName('silo-${silo.name}-exchange-reader')
  scope: resourceGroup(silo.subscriptionId, silo.?exchangeResourceGroup ?? silo.resourceGroup)
  params: {
    principalId: functionApp.outputs.principalId
    storageAccountName: silo.exchangeStorageAccount
    containerName: silo.exchangeContainer
  }
}]

module siloModelReaders 'modules/silo-model-reader.bicep' = [for silo in silos: {
  name: deploymentName('silo-${silo.name}-model-reader')
  scope: rg
  params: {
    principalId: silo.computePrincipalId
    storageAccountName: storage.outputs.storageAccountName
    modelContainerName: storage.outputs.modelContainerName
  }
}]

module registrationWorkspaceAccess 'modules/registration-workspace-access.bicep' = [for owner in registrationWorkspaces: {
  name: deploymentName('registration-${owner.workspace}')
  scope: resourceGroup(owner.subscriptionId, owner.resourceGroup)
  params: {
    principalId: functionApp.outputs.principalId
    workspaceName: owner.workspace
    orchestratorName: environmentName
  }
}]

// azd reads these into the environment.
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.functionAppName
output FLO_API_BASE_URL string = 'https://${functionApp.outputs.defaultHostName}/api'
output FLO_FUNCTION_APP_PRINCIPAL_ID string = functionApp.outputs.principalId
output FLO_JOB_EVENTS_QUEUE_ID string = serviceBus.outputs.jobEventsQueueId
output SERVICE_BUS_NAMESPACE string = serviceBus.outputs.fullyQualifiedNamespace
output STORAGE_ACCOUNT_NAME string = storage.outputs.storageAccountName
