// What a silo admin deploys in the silo's own resource group, once, for silos registered with
// `selfManaged: true` in the orchestrator's `silos` parameter (docs/deploy.md walks through it):
// the workspace's Event Grid system topic; the grants the silo gives flo (AzureML Data Scientist on
// the workspace, Blob Data Reader on the exchange container); and the grants that let the
// orchestrator's deployer create flo's event subscription on that topic (and nothing else here).
// Send the outputs eventTopicPrincipalId and eventTopicName to the orchestrator admin, whose next
// `azd provision` grants the topic Data Sender on the job-events queue and creates the subscription.
// The exchange storage account must be in this resource group (else deploy modules/silo-exchange-reader.bicep where it is).
targetScope = 'resourceGroup'

import { systemTopicName } from 'names.bicep'

@description('Azure ML workspace flo submits the silo jobs to.')
param workspaceName string
param exchangeStorageAccountName string
param exchangeContainerName string
@description('FLO_FUNCTION_APP_PRINCIPAL_ID output of the orchestrator deployment.')
param orchestratorPrincipalId string
@description('The orchestrator azd environment name (tags resources, labels the deployer roles).')
param orchestratorName string
@description('Object id of the identity that runs the orchestrator\'s azd provision (a person or a pipeline service principal).')
param orchestratorDeployerPrincipalId string
@allowed([ 'User', 'Group', 'ServicePrincipal' ])
param orchestratorDeployerPrincipalType string = 'User'

var tags = { app: 'flo', 'flo-orchestrator': orchestratorName }

module eventTopic 'modules/silo-event-topic.bicep' = {
  name: 'flo-event-topic'
  params: {
    systemTopicName: systemTopicName(workspaceName)
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

module deployerAccess 'modules/silo-deployer-access.bicep' = {
  name: 'flo-deployer-access'
  params: {
    principalId: orchestratorDeployerPrincipalId
    principalType: orchestratorDeployerPrincipalType
    systemTopicName: eventTopic.outputs.systemTopicName
    orchestratorName: orchestratorName
  }
}

output eventTopicPrincipalId string = eventTopic.outputs.principalId
output eventTopicName string = eventTopic.outputs.systemTopicName
