// Deployed into the resource group of the silo's exchange storage account: the orchestrator may read
// the silo's model updates from the exchange container only (never the silo's training data).
param principalId string
param storageAccountName string
param containerName string

var storageBlobDataReader = '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1'

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: storage
  name: 'default'
}

resource exchangeContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: blobService
  name: containerName
}

resource orchestratorReadsUpdates 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(exchangeContainer.id, principalId, storageBlobDataReader)
  scope: exchangeContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataReader)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
