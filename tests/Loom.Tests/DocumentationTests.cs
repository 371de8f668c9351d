using System.Reflection;
using System.Xml.Linq;
using Loom;

namespace Loom.Tests;

// Every public member of the Loom assembly is documented in words a user can act on:
// a summary, each parameter, and what a method returns (the XML file the build writes).
public class DocumentationTests
{
    [Test]
    public void EveryPublicMethodDocumentsItsParametersAndResult()
    {
        var asm = typeof(NDArray).Assembly;
        string xmlPath = Path.ChangeExtension(asm.Location, ".xml");
        Assert.That(File.Exists(xmlPath), Is.True, xmlPath);
        var docs = XDocument.Load(xmlPath).Root!.Element("members")!.Elements("member")
            .ToDictionary(m => (string)m.Attribute("name")!, m => m);
        var missing = new List<string>();
        foreach (var type in asm.GetExportedTypes())
        {
            if (type.Namespace != "Loom") continue;  // the generated P/Invoke layer (Loom.Interop) mirrors loom.h
            const BindingFlags flags = BindingFlags.Public | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly;
            var methods = type.GetMethods(flags).Where(m => !m.IsSpecialName || m.Name.StartsWith("op_")).Cast<MethodBase>()
                .Concat(type.GetConstructors(flags));
            foreach (var m in methods)
            {
                if (m.GetCustomAttribute<System.Runtime.CompilerServices.CompilerGeneratedAttribute>() is not null) continue;
                if (type.IsSubclassOf(typeof(Delegate)) || IsRecordPlumbing(type, m)) continue;
                string id = DocId(m);
                if (!docs.TryGetValue(id, out var doc))
                {
                    missing.Add($"{id}: no documentation");
                    continue;
                }
                if (doc.Element("inheritdoc") is not null) continue;
                foreach (var p in m.GetParameters())
                    if (!doc.Elements("param").Any(e => (string)e.Attribute("name")! == p.Name))
                        missing.Add($"{id}: parameter '{p.Name}'");
                if (m is MethodInfo mi && mi.ReturnType != typeof(void) && doc.Element("returns") is null)
                    missing.Add($"{id}: <returns>");
            }
        }
        Assert.That(missing, Is.Empty, $"{missing.Count} gaps:\n" + string.Join("\n", missing));
    }

    [Test]
    public void TheApiReferenceRendersGenericTypes()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "docs", "csharp-api.md"))) dir = dir.Parent;
        Assert.That(dir, Is.Not.Null, "docs/csharp-api.md not found above the test folder");
        string md = File.ReadAllText(Path.Combine(dir!.FullName, "docs", "csharp-api.md"));
        Assert.That(md, Does.Contain("IEnumerable<Callback>"));
        Assert.That(md, Does.Contain("Func<EvalMetric>"));
        var signatures = md.Split('\n').Where(l => l.StartsWith("- `")).Select(l => l[3..l.IndexOf('`', 3)]);
        var unbalanced = signatures.Where(s => s.Count(c => c == '<') != s.Count(c => c == '>')).ToList();
        Assert.That(unbalanced, Is.Empty, "a generic type lost its opening '<' (such as 'Callback>')");
    }

    // Equality, deconstruction and printing that the compiler writes for records.
    private static bool IsRecordPlumbing(Type type, MethodBase m) =>
        type.GetMethod("<Clone>$") is not null &&
        m.Name is "Equals" or "GetHashCode" or "ToString" or "Deconstruct" or "PrintMembers" or "op_Equality" or "op_Inequality";

    // The XML documentation id of a method or constructor (ECMA-334 annex D).
    private static string DocId(MethodBase m)
    {
        string name = m is ConstructorInfo ? "#ctor" : m.Name;
        string typeName = TypeId(m.DeclaringType!, genericParameters: false);
        var ps = m.GetParameters();
        string args = ps.Length == 0 ? "" : "(" + string.Join(",", ps.Select(p => TypeId(p.ParameterType, true))) + ")";
        if (m is MethodInfo mi && mi.IsGenericMethodDefinition) name += "``" + mi.GetGenericArguments().Length;
        string id = $"M:{typeName}.{name}{args}";
        if (m.Name is "op_Implicit" or "op_Explicit") id += "~" + TypeId(((MethodInfo)m).ReturnType, true);
        return id;
    }

    private static string TypeId(Type t, bool genericParameters)
    {
        if (t.IsByRef) return TypeId(t.GetElementType()!, genericParameters) + "@";
        if (t.IsPointer) return TypeId(t.GetElementType()!, genericParameters) + "*";
        if (t.IsArray)
            return TypeId(t.GetElementType()!, genericParameters) +
                   (t.GetArrayRank() == 1 ? "[]" : "[" + string.Join(",", Enumerable.Repeat("0:", t.GetArrayRank())) + "]");
        if (t.IsGenericParameter) return (t.DeclaringMethod is not null ? "``" : "`") + t.GenericParameterPosition;
        string full = (t.IsNested ? TypeId(t.DeclaringType!, false) + "." : (t.Namespace is { } ns ? ns + "." : "")) +
                      (t.IsGenericType ? t.Name[..t.Name.IndexOf('`')] : t.Name);
        if (t.IsGenericType && genericParameters && !t.IsGenericTypeDefinition)
            return full + "{" + string.Join(",", t.GetGenericArguments().Select(a => TypeId(a, true))) + "}";
        if (t.IsGenericType && !genericParameters) return full + "`" + t.GetGenericArguments().Length;
        return full;
    }
}
