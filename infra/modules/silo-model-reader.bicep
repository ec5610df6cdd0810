// Deployed into the orchestrator's resource group: a silo's compute identity may read global models
// from the orchestrator's model container, and only them. The container also holds other silos'
// updates and round manifests, so an attribute-based condition limits reads and listings to the
// `federations/<id>/rounds/<r>/global/` folders. No write access to orchestrator storage.
param principalId string
param storageAccountName string
param modelContainerName string

var storageBlobDataReader = '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1'
var blobRead = 'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read'
var globalModels = 'federations/*/rounds/*/global/*'
// A mounted input lists the folder itself too (prefix `.../global`, no trailing slash).
var globalModelsFolder = 'federations/*/rounds/*/global'
var onlyGlobalModels = '((!(ActionMatches{\'${blobRead}\'} AND NOT SubOperationMatches{\'Blob.List\'})) OR (@Resource[Microsoft.Storage/storageAccounts/blobServices/containers/blobs:path] StringLike \'${globalModels}\')) AND ((!(ActionMatches{\'${blobRead}\'} AND SubOperationMatches{\'Blob.List\'})) OR (@Request[Microsoft.Storage/storageAccounts/blobServices/containers/blobs:prefix] StringLike \'${globalModels}\') OR (@Request[Microsoft.Storage/storageAccounts/blobServices/containers/blobs:prefix] StringLike \'${globalModelsFolder}\'))'

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: storage
  name: 'default'
}

resource modelContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: blobService
  name: modelContainerName
}

resource siloReadsGlobalModels 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(modelContainer.id, principalId, storageBlobDataReader)
  scope: modelContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataReader)
    principalId: principalId
    principalType: 'ServicePrincipal'
    condition: onlyGlobalModels
    conditionVersion: '2.0'
  }
}
