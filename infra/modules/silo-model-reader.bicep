// Deployed into the orchestrator's resource group: a silo's compute identity may read global models
// and uploaded job code from the orchestrator's model container, and only them. The container also
// holds other silos' updates and round manifests, so an attribute-based condition limits reads and
// listings to the `federations/<id>/rounds/<r>/global/` folders and the `code/<sha256>/` folders
// (the job's code version points there; every silo runs the same code). No write access to
// orchestrator storage.
param principalId string
param storageAccountName string
param modelContainerName string

var storageBlobDataReader = '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1'
var blobRead = 'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read'
var blobPath = '@Resource[Microsoft.Storage/storageAccounts/blobServices/containers/blobs:path]'
var listPrefix = '@Request[Microsoft.Storage/storageAccounts/blobServices/containers/blobs:prefix]'
var globalModels = 'federations/*/rounds/*/global/*'
// A mounted input lists the folder itself too (prefix `.../global`, no trailing slash).
var globalModelsFolder = 'federations/*/rounds/*/global'
var uploadedCode = 'code/*'
var uploadedCodeFolder = 'code'
var readsAllowed = '(${blobPath} StringLike \'${globalModels}\') OR (${blobPath} StringLike \'${uploadedCode}\')'
var listingsAllowed = '(${listPrefix} StringLike \'${globalModels}\') OR (${listPrefix} StringLike \'${globalModelsFolder}\') OR (${listPrefix} StringLike \'${uploadedCode}\') OR (${listPrefix} StringLike \'${uploadedCodeFolder}\')'
var onlyGlobalModelsAndCode = '((!(ActionMatches{\'${blobRead}\'} AND NOT SubOperationMatches{\'Blob.List\'})) OR ${readsAllowed}) AND ((!(ActionMatches{\'${blobRead}\'} AND SubOperationMatches{\'Blob.List\'})) OR ${listingsAllowed})'

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

resource siloReadsGlobalModelsAndCode 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(modelContainer.id, principalId, storageBlobDataReader)
  scope: modelContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataReader)
    principalId: principalId
    principalType: 'ServicePrincipal'
    condition: onlyGlobalModelsAndCode
    conditionVersion: '2.0'
  }
}
