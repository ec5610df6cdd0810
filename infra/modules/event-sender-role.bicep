// Deployed into the orchestrator's resource group: lets one silo's Event Grid system topic identity
// send to the job-events queue, and nothing else.
param principalId string
param serviceBusNamespaceName string
param jobEventsQueueName string

var serviceBusDataSender = '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39'

resource namespace 'Microsoft.ServiceBus/namespaces@2022-10-01-preview' existing = {
  name: serviceBusNamespaceName
}

resource jobEventsQueue 'Microsoft.ServiceBus/namespaces/queues@2022-10-01-preview' existing = {
  parent: namespace
  name: jobEventsQueueName
}

resource topicSendsJobEvents 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(jobEventsQueue.id, principalId, serviceBusDataSender)
  scope: jobEventsQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', serviceBusDataSender)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
