// What the Function App's identity may do in the orchestrator's own resource group. Each assignment
// is scoped to the one resource it needs (see docs/security.md).
param principalId string
param storageAccountName string
@description('Blob containers the app writes: flo\'s model container and the Functions/Durable host containers.')
param writableContainerNames array
@description('The Flex Consumption deployment package container.')
param deploymentContainerName string
param serviceBusNamespaceName string
param jobEventsQueueName string
param jobEventsRejectedQueueName string
@description('The partners\' command queues (`partner-<name>`): the app\'s Service Bus triggers listen to each.')
param partnerQueueNames string[]
param partnerRejectedQueueNames string[]
param notificationsTopicName string
param applicationInsightsName string

var storageBlobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
var storageQueueDataContributor = '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
var storageTableDataContributor = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
var serviceBusDataSender = '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39'
var monitoringMetricsPublisher = '3913510d-42f4-4e42-8a64-420c390055eb'

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: storage
  name: 'default'
}

resource writableContainers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = [for containerName in writableContainerNames: {
  parent: blobService
  name: containerName
}]

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: blobService
  name: deploymentContainerName
}

resource namespace 'Microsoft.ServiceBus/namespaces@2022-10-01-preview' existing = {
  name: serviceBusNamespaceName
}

resource jobEventsQueue 'Microsoft.ServiceBus/namespaces/queues@2022-10-01-preview' existing = {
  parent: namespace
  name: jobEventsQueueName
}

resource partnerQueues 'Microsoft.ServiceBus/namespaces/queues@2022-10-01-preview' existing = [for queueName in partnerQueueNames: {
  parent: namespace
  name: queueName
}]

resource jobEventsRejectedQueue 'Microsoft.ServiceBus/namespaces/queues@2022-10-01-preview' existing = {
  parent: namespace
  name: jobEventsRejectedQueueName
}

resource partnerRejectedQueues 'Microsoft.ServiceBus/namespaces/queues@2022-10-01-preview' existing = [for queueName in partnerRejectedQueueNames: {
  parent: namespace
  name: queueName
}]

resource notificationsTopic 'Microsoft.ServiceBus/namespaces/topics@2022-10-01-preview' existing = {
  parent: namespace
  name: notificationsTopicName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

// Blob data only where the app writes: each listed container, never the whole account (a leaked
// token then cannot touch other containers, e.g. to plant files for another app).
resource appStorageBlob 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (containerName, i) in writableContainerNames: {
  name: guid(writableContainers[i].id, principalId, storageBlobDataContributor)
  scope: writableContainers[i]
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}]

// Apart: Flex Consumption's one-deploy writes the package into this container with the app's
// identity (functionAppConfig.deployment.storage.authentication), and the platform reads it on start.
resource appDeploymentPackage 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(deploymentContainer.id, principalId, storageBlobDataContributor)
  scope: deploymentContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource appStorageQueue 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, principalId, storageQueueDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource appStorageTable 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, principalId, storageTableDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

// What a Service Bus trigger needs on Flex Consumption: Azure Service Bus Data Receiver's permissions
// plus the read the scale controller needs for the queue's message count (runtime properties). Data
// Owner would do, but it includes namespace management and send (forbidden here): this role adds
// only Microsoft.ServiceBus/namespaces/*/read to Data Receiver, assigned on each trigger queue only
// (docs/security.md, Custom roles).
resource serviceBusTriggerRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(resourceGroup().id, namespace.id, 'flo-service-bus-trigger')
  properties: {
    roleName: 'flo Service Bus trigger (${serviceBusNamespaceName})'
    description: 'Receive from a queue and read its runtime properties (message count) for the Functions scale controller.'
    type: 'customRole'
    assignableScopes: [ resourceGroup().id ]
    permissions: [
      {
        actions: [
          // Azure Service Bus Data Receiver's actions
          'Microsoft.ServiceBus/*/queues/read'
          'Microsoft.ServiceBus/*/topics/read'
          'Microsoft.ServiceBus/*/topics/subscriptions/read'
          // the scale controller's queue-length read
          'Microsoft.ServiceBus/namespaces/*/read'
        ]
        notActions: []
        // Azure Service Bus Data Receiver's data action: no send, no management
        dataActions: [ 'Microsoft.ServiceBus/*/receive/action' ]
        notDataActions: []
      }
    ]
  }
}

resource appJobEventsTrigger 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(jobEventsQueue.id, principalId, serviceBusTriggerRole.id)
  scope: jobEventsQueue
  properties: {
    roleDefinitionId: serviceBusTriggerRole.id
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource appPartnerQueueTriggers 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (queueName, i) in partnerQueueNames: {
  name: guid(partnerQueues[i].id, principalId, serviceBusTriggerRole.id)
  scope: partnerQueues[i]
  properties: {
    roleDefinitionId: serviceBusTriggerRole.id
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}]

// flo sends the messages it rejects (with the reason) to these queues, and nowhere else but the topic.
resource appJobEventsRejectedSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(jobEventsRejectedQueue.id, principalId, serviceBusDataSender)
  scope: jobEventsRejectedQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', serviceBusDataSender)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource appPartnerRejectedSenders 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (queueName, i) in partnerRejectedQueueNames: {
  name: guid(partnerRejectedQueues[i].id, principalId, serviceBusDataSender)
  scope: partnerRejectedQueues[i]
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', serviceBusDataSender)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}]

resource appNotificationsSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(notificationsTopic.id, principalId, serviceBusDataSender)
  scope: notificationsTopic
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', serviceBusDataSender)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource appTelemetryPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(applicationInsights.id, principalId, monitoringMetricsPublisher)
  scope: applicationInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisher)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
