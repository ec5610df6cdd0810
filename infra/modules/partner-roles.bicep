// Deployed into the orchestrator's resource group, per partner that has an Entra identity in this
// tenant: send commands to its own queue (`partner-<name>`: the only queue it may send to, so a
// command's queue proves who sent it), receive from its own notifications subscription.
param principalId string
param serviceBusNamespaceName string
@description('This partner\'s command queue (servicebus.bicep partnerQueueNames).')
param partnerQueueName string
param notificationsTopicName string
param subscriptionName string

var serviceBusDataSender = '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39'
var serviceBusDataReceiver = '4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0'

resource namespace 'Microsoft.ServiceBus/namespaces@2022-10-01-preview' existing = {
  name: serviceBusNamespaceName
}

resource partnerQueue 'Microsoft.ServiceBus/namespaces/queues@2022-10-01-preview' existing = {
  parent: namespace
  name: partnerQueueName
}

resource notificationsTopic 'Microsoft.ServiceBus/namespaces/topics@2022-10-01-preview' existing = {
  parent: namespace
  name: notificationsTopicName
}

resource partnerSubscription 'Microsoft.ServiceBus/namespaces/topics/subscriptions@2022-10-01-preview' existing = {
  parent: notificationsTopic
  name: subscriptionName
}

resource partnerSendsCommands 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(partnerQueue.id, principalId, serviceBusDataSender)
  scope: partnerQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', serviceBusDataSender)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource partnerReadsNotifications 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(partnerSubscription.id, principalId, serviceBusDataReceiver)
  scope: partnerSubscription
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', serviceBusDataReceiver)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
