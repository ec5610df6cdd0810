// What a silo admin deploys in the silo's own resource group (for silos registered with
// `selfManaged: true` in the orchestrator's `silos` parameter; docs/deploy.md walks through it):
//   step 1 (createEventSubscription=false): the workspace's Event Grid system topic, and the grants the
//           silo gives flo (AzureML Data Scientist on the workspace, Blob Data Reader on the exchange
//           container). Send the output eventTopicPrincipalId to the orchestrator admin.
//   step 2 (createEventSubscription=true, after the orchestrator granted that identity Data Sender on
//           the job-events queue): the event subscription delivering flo's job events.
// The exchange storage account must be in this resource group (else deploy modules/silo-exchange-reader.bicep where it is).
targetScope = 'resourceGroup'

@description('Azure ML workspace flo submits the silo jobs to.')
param workspaceName string
param exchangeStorageAccountName string
param exchangeContainerName string
@description('FLO_FUNCTION_APP_PRINCIPAL_ID output of the orchestrator deployment.')
param orchestratorPrincipalId string
@description('FLO_JOB_EVENTS_QUEUE_ID output of the orchestrator deployment.')
param jobEventsQueueId string
@description('The orchestrator azd environment name (names the event subscription, tags resources).')
param orchestratorName string
param createEventSubscription bool = false
param floAppTagValue string = 'flo'
param eventTimeToLiveInMinutes int = 1440

var tags = { app: 'flo', 'flo-orchestrator': orchestratorName }

module eventTopic 'modules/silo-event-topic.bicep' = {
  name: 'flo-event-topic'
  params: {
    systemTopicName: 'evgt-${workspaceName}'
    workspaceName: workspaceName
    tags: tags
  }
}

module workspaceAccess 'modules/silo-workspace-access.bicep' = {
  name: 'flo-workspace-access'
  params: {
    principalId: orchestratorPrincipalId
    workspaceName: workspaceName
  }
}

module exchangeReader 'modules/silo-exchange-reader.bicep' = {
  name: 'flo-exchange-reader'
  params: {
    principalId: orchestratorPrincipalId
    storageAccountName: exchangeStorageAccountName
    containerName: exchangeContainerName
  }
}

module eventSubscription 'modules/silo-event-subscription.bicep' = if (createEventSubscription) {
  name: 'flo-event-subscription'
  params: {
    systemTopicName: eventTopic.outputs.systemTopicName
    eventSubscriptionName: 'flo-${orchestratorName}-job-events'
    jobEventsQueueId: jobEventsQueueId
    floAppTagValue: floAppTagValue
    eventTimeToLiveInMinutes: eventTimeToLiveInMinutes
  }
}

output eventTopicPrincipalId string = eventTopic.outputs.principalId
output eventSubscriptionCreated bool = createEventSubscription
