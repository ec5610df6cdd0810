// Deployed by the silo admin (infra/silo.bicep) into the silo's resource group: lets the identity that
// runs the orchestrator's `azd provision` create flo's event subscription on this workspace's system
// topic, and nothing else. The orchestrator side must create it: a subscription whose destination is
// a Service Bus queue can only be created by someone with write access to that queue, which a silo
// admin does not get. Two custom roles, because no built-in role fits:
// - EventGrid EventSubscription Contributor holds Microsoft.EventGrid/eventSubscriptions/* (regional
//   and extension subscriptions), not Microsoft.EventGrid/systemTopics/eventSubscriptions/*, which a
//   system topic's subscriptions need; EventGrid Contributor would also let the deployer delete or
//   re-point the topic.
// - A nested deployment into this resource group needs Microsoft.Resources/deployments/write on the
//   resource group itself (a grant on the topic does not cover it). Deployments add no rights: every
//   resource a deployment writes is authorized against the deployer's own roles.
param principalId string
@description('Kind of the identity running the orchestrator deployment: a person (azd up) or a pipeline\'s service principal.')
@allowed([ 'User', 'Group', 'ServicePrincipal' ])
param principalType string
param systemTopicName string
@description('The orchestrator azd environment name (labels the custom roles).')
param orchestratorName string

resource systemTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' existing = {
  name: systemTopicName
}

// Role names are unique per tenant: the resource group id keeps two silos' roles apart.
var roleSuffix = '${orchestratorName}, ${uniqueString(resourceGroup().id)}'

resource eventSubscriptionWriter 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(resourceGroup().id, orchestratorName, 'flo-event-subscription-writer')
  properties: {
    roleName: 'flo event subscription writer (${roleSuffix})'
    description: 'Create, read and delete event subscriptions of one Event Grid system topic.'
    type: 'customRole'
    assignableScopes: [ resourceGroup().id ]
    permissions: [
      {
        actions: [
          'Microsoft.EventGrid/systemTopics/read'
          'Microsoft.EventGrid/systemTopics/eventSubscriptions/read'
          'Microsoft.EventGrid/systemTopics/eventSubscriptions/write'
          'Microsoft.EventGrid/systemTopics/eventSubscriptions/delete'
        ]
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
  }
}

resource nestedDeployer 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(resourceGroup().id, orchestratorName, 'flo-nested-deployer')
  properties: {
    roleName: 'flo nested deployments (${roleSuffix})'
    description: 'Run deployments in this resource group; what they deploy needs its own grants.'
    type: 'customRole'
    assignableScopes: [ resourceGroup().id ]
    permissions: [
      {
        actions: [
          'Microsoft.Resources/deployments/*'
          'Microsoft.Resources/subscriptions/resourceGroups/read'
        ]
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
  }
}

resource deployerWritesEventSubscriptions 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(systemTopic.id, principalId, eventSubscriptionWriter.id)
  scope: systemTopic
  properties: {
    roleDefinitionId: eventSubscriptionWriter.id
    principalId: principalId
    principalType: principalType
  }
}

// The one assignment on a resource group: its role can only run deployments (see above).
resource deployerDeploysHere 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(resourceGroup().id, principalId, nestedDeployer.id)
  properties: {
    roleDefinitionId: nestedDeployer.id
    principalId: principalId
    principalType: principalType
  }
}
